"""InsightFace validation ``.bin`` files (LFW, CFP-FP, AgeDB-30, ...).

A ``.bin`` is a pickled 2-tuple ``(bins, issame_list)``: ``2P`` encoded images, pair ``i``
being ``bins[2i]`` and ``bins[2i+1]``, and ``P`` same-identity flags. Old files are
Python 2 pickles whose images are ``str`` (read as ``bytes``); newer ones hold numpy
uint8 arrays of the encoded bytes. Files are loaded with a restricted unpickler only.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from sphereface2.data.decode import decode_image
from sphereface2.data.safe_pickle import safe_load
from sphereface2.data.transforms import Transform, to_tensor

BIN_VARIANTS = ("numpy", "bytes")


@dataclass(eq=False)
class BinPairs:
    """The content of a ``.bin``: encoded images and one flag per pair."""

    images: list[bytes]
    issame: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        """Number of pairs."""
        return len(self.issame)


def _image_bytes(item: object, path: str, index: int) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, bytearray):
        return bytes(item)
    if isinstance(item, str):  # Python 2 str loaded as text: the code points are the bytes
        return item.encode("latin1")
    if isinstance(item, np.ndarray) and item.dtype == np.uint8:
        return item.tobytes()
    raise ValueError(
        f"{path}: image {index} is a {type(item).__name__}"
        f"{f' of dtype {item.dtype}' if isinstance(item, np.ndarray) else ''}; expected "
        f"encoded image bytes or a uint8 array"
    )


def _flags(value: object, path: str) -> np.ndarray:
    flags = np.asarray(value)
    if flags.size == 0:
        raise ValueError(f"{path}: holds no pairs (issame is empty)")
    if flags.ndim != 1:
        raise ValueError(f"{path}: issame must be a flat list of booleans, got shape {flags.shape}")
    if flags.dtype != bool and (flags.dtype.kind not in "iu" or not np.isin(flags, (0, 1)).all()):
        raise ValueError(f"{path}: issame must hold booleans, got dtype {flags.dtype}")
    return flags.astype(bool)


def read_bin(path: str | os.PathLike) -> BinPairs:
    """Read a validation ``.bin`` (either variant) through the restricted unpickler."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"validation .bin not found: {path}")
    content = safe_load(path, encoding="bytes")
    if not isinstance(content, (tuple, list)) or len(content) != 2:
        raise ValueError(f"{path}: expected a pickled (images, issame) pair")
    bins, issame = content
    if not isinstance(bins, (list, tuple)):
        raise ValueError(f"{path}: images must be a list, got {type(bins).__name__}")
    images = [_image_bytes(item, path, i) for i, item in enumerate(bins)]
    flags = _flags(issame, path)
    if len(images) != 2 * len(flags):
        raise ValueError(
            f"{path}: {len(images)} images for {len(flags)} pairs; a .bin needs exactly "
            f"2 images per pair"
        )
    return BinPairs(images, flags, source=path)


def write_bin(
    path: str | os.PathLike,
    images: Sequence[bytes],
    issame: Sequence[bool],
    variant: str = "numpy",
) -> None:
    """Write a validation ``.bin``: ``images[2i]``, ``images[2i+1]`` form pair ``i``.

    ``variant="numpy"`` stores uint8 arrays (newer InsightFace files, pickle protocol 4);
    ``"bytes"`` stores plain bytes with pickle protocol 2 (the old layout). Reading back
    with :func:`read_bin` gives the same bytes and flags.
    """
    path = str(path)
    if variant not in BIN_VARIANTS:
        raise ValueError(f"unknown .bin variant {variant!r}; choose from {', '.join(BIN_VARIANTS)}")
    flags = [bool(v) for v in issame]
    if len(images) != 2 * len(flags):
        raise ValueError(f"{path}: {len(images)} images for {len(flags)} pairs (need 2 per pair)")
    for i, image in enumerate(images):
        if not isinstance(image, (bytes, bytearray)) or not image:
            raise ValueError(f"{path}: image {i} must be non-empty encoded image bytes")
    if variant == "numpy":
        bins: list = [np.frombuffer(bytes(image), dtype=np.uint8).copy() for image in images]
        protocol = 4
    else:
        bins = [bytes(image) for image in images]
        protocol = 2
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        pickle.dump((bins, flags), f, protocol=protocol)
    os.replace(tmp, path)


class BinPairDataset(Dataset):
    """The ``2P`` images of a ``.bin``: yields ``(transform(rgb), index)``.

    ``issame[i]`` tells whether images ``2i`` and ``2i+1`` show the same person.
    """

    def __init__(self, path: str | os.PathLike, transform: Transform | None = None) -> None:
        self.path = str(path)
        content = read_bin(self.path)
        self.images = content.images
        self.issame = content.issame
        self.transform = transform if transform is not None else to_tensor

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self.images):
            raise IndexError(f"{self.path}: image index {index} out of range ({len(self)})")
        rgb = decode_image(self.images[index], source=f"{self.path} image {index}")
        return self.transform(rgb), index

    def __repr__(self) -> str:
        return f"BinPairDataset({self.path!r}, pairs={len(self.issame)})"
