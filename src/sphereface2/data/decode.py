"""Image decoding and encoding shared by every reader and writer.

Colour order, end to end: every array this package hands around is RGB, uint8, HxWx3.
InsightFace RecordIO files hold JPEGs that were encoded from BGR pixel arrays, which in
a JPEG stream means the stored colours are the true colours; decoders therefore return
RGB directly and no channel swap is ever needed on read. Writers encode RGB arrays.

Other pixel modes, and why each conversion is the one it is:

- 16-bit grayscale (Pillow modes ``I;16*``, and ``I`` holding values 0..65535, which is
  how older Pillow opens 16-bit PNGs): keep the high byte, ``v >> 8``. Pillow itself
  does that for 16-bit RGB(A) PNGs (as libpng's ``strip_16`` does), so a 16-bit gray file
  and the same picture as 16-bit RGB give the same pixels; it also inverts both usual
  8-to-16-bit expansions (``v * 257`` and ``v << 8``) exactly. Pillow's own ``convert``
  clips these modes at 255 instead, which turns almost every pixel white.
- Alpha is dropped, never composited: RGBA, LA, PA and palette images with transparency
  keep their stored colours (as OpenCV's ``imread`` does), so transparent pixels do not
  change colour with the file format.
- Palette images: each index becomes its palette colour.
"""

from __future__ import annotations

import io
import re

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
# Pillow names an in-memory buffer by its repr; messages name the real source instead.
_BUFFER_REPR = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")
# What Pillow raises for bad data (SyntaxError: some plugins' "broken file" errors).
_PILLOW_ERRORS = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    ValueError,
    SyntaxError,
)


class ImageDecodeError(ValueError):
    """Raised when bytes cannot be decoded as an image; the message names the source."""


def _is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def _gray16_to_rgb(img: Image.Image, source: str) -> np.ndarray:
    values = np.asarray(img)
    if img.mode == "I" and values.size and (values.min() < 0 or values.max() > 0xFFFF):
        raise ImageDecodeError(
            f"{source}: 32-bit integer image with values {values.min()}..{values.max()} "
            f"outside 0..65535 has no defined 8-bit scale"
        )
    gray = (values.astype(np.uint32) >> 8).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def pil_to_rgb(img: Image.Image, source: str = "<image>") -> np.ndarray:
    """An RGB uint8 (H, W, 3) copy of a Pillow image of any mode (see the module docstring).

    Loads the pixels, so a truncated file fails here; ``source`` names it in the error.
    """
    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "I":
        return _gray16_to_rgb(img, source)
    if img.mode in ("P", "PA"):
        # Through RGBA: Pillow warns when converting a palette with per-index alpha to RGB.
        return np.array(img.convert("RGBA"))[:, :, :3]
    return np.array(img.convert("RGB"))  # a writable copy: torch.from_numpy warns otherwise


def _describe_failure(err: Exception, data: bytes, source: str) -> str:
    if isinstance(err, UnidentifiedImageError):
        return f"not a known image format (starts with {data[:8]!r})"
    return _BUFFER_REPR.sub(source, str(err)) or type(err).__name__


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode JPEG/PNG/BMP/TIFF/... bytes into an RGB uint8 array of shape (H, W, 3).

    Every pixel is decoded: a truncated file is an error, not a grey-padded image.
    ``source`` names the file or record in the error message.
    """
    if not data:
        raise ImageDecodeError(f"{source}: empty image data")
    if _is_jpeg(data):
        try:
            return simplejpeg.decode_jpeg(data, colorspace="RGB")  # strict: truncation raises
        except ValueError:
            pass  # unusual JPEGs (e.g. CMYK, arithmetic coding): let Pillow try
    try:
        with Image.open(io.BytesIO(data)) as img:
            return pil_to_rgb(img, source)
    except ImageDecodeError:
        raise
    except _PILLOW_ERRORS as err:
        reason = _describe_failure(err, data, source)
        raise ImageDecodeError(f"{source}: cannot decode image ({reason})") from err


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
