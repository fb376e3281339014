"""What ``FaceModel.embed`` accepts as images, turned into RGB uint8 (H, W, 3) arrays.

One image is a file path (``str`` or ``os.PathLike``), an RGB uint8 (H, W, 3) numpy array
or a Pillow image (any mode: it is converted as the readers convert files). Many images are
a list or tuple of those, or one (N, H, W, 3) uint8 array. Inputs are only checked here;
files are decoded batch by batch when the model needs them, so a long list of paths is
never held in memory as pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
from PIL import Image

from sphereface2.data.decode import pil_to_rgb, read_image

#: One image: a path, an RGB uint8 (H, W, 3) array or a Pillow image.
ImageLike = Union[str, "os.PathLike[str]", np.ndarray, Image.Image]


def _is_single(images: Any) -> bool:
    if isinstance(images, str | os.PathLike | Image.Image):
        return True
    return isinstance(images, np.ndarray) and images.ndim != 4


def as_image_list(images: Any) -> tuple[list[ImageLike], bool]:
    """``(items, single)``: the images as a list, and whether one image was given.

    Raises:
        TypeError: ``images`` is none of the accepted kinds (see the module docstring).
    """
    if _is_single(images):
        return [images], True
    if isinstance(images, np.ndarray):  # (N, H, W, 3): one array per row
        return list(images), False
    if isinstance(images, bytes | bytearray) or not isinstance(images, Sequence):
        raise TypeError(
            "images must be a path, an RGB uint8 (H, W, 3) array, a PIL image, a list of "
            f"those or an (N, H, W, 3) uint8 array; got {type(images).__name__}"
        )
    return list(images), False


def image_label(item: ImageLike, index: int) -> str:
    """How messages and results name an image: its path, else its position."""
    if isinstance(item, str | os.PathLike):
        return os.fspath(item)
    kind = "PIL image" if isinstance(item, Image.Image) else "array"
    return f"<{kind} {index}>"


def load_rgb(item: ImageLike, index: int = 0) -> np.ndarray:
    """The RGB uint8 (H, W, 3) pixels of one image; errors name the path or position."""
    if isinstance(item, str | os.PathLike):
        return read_image(os.fspath(item))
    if isinstance(item, Image.Image):
        return pil_to_rgb(item, image_label(item, index))
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
            raise ValueError(
                f"{image_label(item, index)}: expected an RGB uint8 (H, W, 3) array, got "
                f"{item.dtype} {item.shape} (convert grey or float images first, e.g. with "
                "PIL's Image.convert('RGB'))"
            )
        if item.shape[0] == 0 or item.shape[1] == 0:
            raise ValueError(f"{image_label(item, index)}: empty image {item.shape}")
        # torch.from_numpy warns on read-only arrays (np.asarray of a PIL image is one)
        return item if item.flags.writeable else item.copy()
    raise TypeError(
        f"image {index}: expected a path, an RGB uint8 (H, W, 3) array or a PIL image, got "
        f"{type(item).__name__}"
    )
