"""MegaFace feature files, as the devkit and InsightFace's ``gen_megaface.py`` write them.

One file per image, named ``<image file name>_<suffix>.bin`` (e.g. ``12345.jpg_sf2.bin``) in a
folder tree that mirrors the images. Layout: an OpenCV matrix, four little-endian int32 -- rows,
cols, row stride in bytes, OpenCV type code (5 = CV_32F, 6 = CV_64F) -- then rows x stride bytes
of data. A feature of size d is written as a d x 1 float32 matrix (stride 4).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HEADER = struct.Struct("<4i")
CV_32F = 5
CV_64F = 6
_DTYPES = {CV_32F: np.dtype("<f4"), CV_64F: np.dtype("<f8")}


class MegaFaceFormatError(ValueError):
    """A malformed MegaFace feature file; the message names the file."""


def feature_file_name(image_name: str, suffix: str) -> str:
    """``<image file name>_<suffix>.bin``: the devkit's name for an image's feature file."""
    if not suffix or "/" in suffix or "\\" in suffix:
        raise ValueError(f"feature suffix must be a non-empty name without slashes, got {suffix!r}")
    return f"{Path(image_name).name}_{suffix}.bin"


def feature_path(image_relpath: str | Path, suffix: str, feature_root: str | Path) -> Path:
    """Where an image's feature file goes: the image's relative folders under ``feature_root``.

    Args:
        image_relpath: image path relative to the image root (e.g. ``"Adam_Brody/x.png"``).
        suffix: the feature suffix (the algorithm name given to the devkit).
        feature_root: root of the feature tree.
    """
    rel = Path(image_relpath)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"image path must be relative and inside the root, got {image_relpath}")
    return Path(feature_root) / rel.parent / feature_file_name(rel.name, suffix)


def write_feature(path: str | Path, feature: object) -> None:
    """Write one feature vector as a (d x 1) CV_32F matrix."""
    f = np.asarray(feature)
    if f.ndim != 1 or f.shape[0] == 0:
        raise ValueError(f"{path}: a feature must be a non-empty 1-D vector, got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError(f"{path}: feature has non-finite values")
    data = f.astype("<f4")
    with open(path, "wb") as out:
        out.write(HEADER.pack(data.shape[0], 1, 4, CV_32F))
        out.write(data.tobytes())


def read_feature(path: str | Path) -> np.ndarray:
    """Read one feature file.

    Returns:
        The matrix flattened to a 1-D vector, in its stored dtype (float32 or float64).

    Raises:
        MegaFaceFormatError: bad header, unsupported type, or a size that does not match it.
    """
    raw = Path(path).read_bytes()
    if len(raw) < HEADER.size:
        raise MegaFaceFormatError(
            f"{path}: {len(raw)} bytes, shorter than the {HEADER.size}-byte matrix header"
        )
    rows, cols, stride, code = HEADER.unpack_from(raw)
    if code not in _DTYPES:
        raise MegaFaceFormatError(
            f"{path}: OpenCV type code {code} is not supported (5 = CV_32F, 6 = CV_64F)"
        )
    dtype = _DTYPES[code]
    if rows <= 0 or cols <= 0:
        raise MegaFaceFormatError(f"{path}: header gives a {rows} x {cols} matrix")
    if stride != cols * dtype.itemsize:
        raise MegaFaceFormatError(
            f"{path}: row stride {stride} bytes does not fit {cols} column(s) of {dtype.name}"
        )
    expected = HEADER.size + rows * stride
    if len(raw) != expected:
        raise MegaFaceFormatError(
            f"{path}: header gives {rows} x {cols} {dtype.name} ({expected} bytes in all) but the "
            f"file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=dtype, offset=HEADER.size).astype(dtype.newbyteorder("="))


def read_features(paths: Sequence[str | Path]) -> np.ndarray:
    """Read many feature files into an (N, d) float32 matrix (sizes must agree)."""
    if not paths:
        raise ValueError("no feature files given")
    first = read_feature(paths[0])
    out = np.empty((len(paths), first.shape[0]), dtype=np.float32)
    out[0] = first
    for i, p in enumerate(paths[1:], 1):
        f = read_feature(p)
        if f.shape != first.shape:
            raise MegaFaceFormatError(
                f"{p}: feature of size {f.shape[0]}, but {paths[0]} has size {first.shape[0]}"
            )
        out[i] = f
    return out
