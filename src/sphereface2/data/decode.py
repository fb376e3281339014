"""Image decoding and encoding shared by every reader and writer.

Colour order, end to end: every array this package hands around is RGB, uint8, HxWx3.
InsightFace RecordIO files hold JPEGs that were encoded from BGR pixel arrays, which in
a JPEG stream means the stored colours are the true colours; decoders therefore return
RGB directly and no channel swap is ever needed on read. Writers encode RGB arrays.
"""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError


class ImageDecodeError(ValueError):
    """Raised when bytes cannot be decoded as an image; the message names the source."""


def _is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode JPEG/PNG/BMP/... bytes into an RGB uint8 array of shape (H, W, 3).

    ``source`` names the file or record in the error message.
    """
    if not data:
        raise ImageDecodeError(f"{source}: empty image data")
    if _is_jpeg(data):
        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ValueError:
            pass  # unusual JPEGs (e.g. CMYK, arithmetic coding): let Pillow try
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.array(img.convert("RGB"))  # a writable copy: torch.from_numpy warns otherwise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ImageDecodeError(f"{source}: cannot decode image ({err})") from err


def read_image(path: str) -> np.ndarray:
    """Read an image file into RGB uint8 (H, W, 3); errors name the path."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ImageDecodeError(f"{path}: cannot read image file ({err.strerror})") from err
    return decode_image(data, source=path)


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB uint8 (H, W, 3) array as baseline JPEG."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"encode_jpeg expects uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    return simplejpeg.encode_jpeg(np.ascontiguousarray(rgb), quality=quality, colorspace="RGB")
