"""Verification pair sets from files: InsightFace ``.bin``, LFW ``pairs.txt`` + image folder,
and OpenSphere ``label path0 path1`` pair lists, each opened as a named :class:`PairSet`.

A :class:`PairSet` separates *images* from *pairs*: ``dataset`` yields every distinct image
once (``(tensor, index)``), and ``idx0`` / ``idx1`` give each pair's two positions in it. A
model therefore embeds each image once, however many pairs use it.

Set names default from the file name and map the usual benchmark files onto the paper's
column names (``lfw`` -> ``LFW``, ``agedb_30`` -> ``AgeDB-30``, ``calfw`` -> ``CALFW``,
``cplfw`` -> ``CPLFW``, ``cfp_fp`` -> ``CFP-FP``, ...).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from torch.utils.data import Dataset

from sphereface2.data.bin_format import BinPairDataset
from sphereface2.data.pairs import (
    PairImageDataset,
    PairList,
    check_images_exist,
    read_lfw_pairs,
    read_pair_list,
)
from sphereface2.data.transforms import FaceTransform, eval_transform

PairSetKind = Literal["bin", "lfw", "pair-list"]

#: The paper's four verification sets, in the paper's column order.
PAPER_SETS: tuple[str, ...] = ("LFW", "AgeDB-30", "CALFW", "CPLFW")

# Normalised file stems (lower case, no separators) -> the names used in papers' tables.
_CANONICAL = {
    "lfw": "LFW",
    "agedb30": "AgeDB-30",
    "agedb": "AgeDB-30",
    "calfw": "CALFW",
    "cplfw": "CPLFW",
    "cfpfp": "CFP-FP",
    "cfpff": "CFP-FF",
    "vgg2fp": "VGG2-FP",
}
# Decorations around the set name in common file names (OpenSphere's ``lfw_ann.txt``).
_DECORATION = re.compile(r"(^pairs?[_-])|([_-](ann|pairs?|list|val|test)$)", re.IGNORECASE)


def display_name(name: str) -> str:
    """The table name for a set name or file stem: ``agedb_30`` -> ``AgeDB-30``; unknown
    names are returned unchanged."""
    stem = _DECORATION.sub("", name)
    key = re.sub(r"[^0-9a-z]", "", stem.lower())
    return _CANONICAL.get(key, name)


@dataclass(eq=False)
class PairSet:
    """A named verification set: distinct images plus the pairs over them.

    Attributes:
        name: the set's name in tables (e.g. ``LFW``).
        dataset: yields ``(image tensor, index)`` for each distinct image, in index order.
        idx0: (P,) position in ``dataset`` of the first image of each pair, in file order.
        idx1: (P,) position of the second image.
        issame: (P,) True for genuine pairs.
        source: the file the pairs came from.
        kind: ``"bin"``, ``"lfw"`` or ``"pair-list"``.
    """

    name: str
    dataset: Dataset
    idx0: np.ndarray
    idx1: np.ndarray
    issame: np.ndarray
    source: str
    kind: PairSetKind

    def __post_init__(self) -> None:
        self.idx0 = np.asarray(self.idx0, dtype=np.int64)
        self.idx1 = np.asarray(self.idx1, dtype=np.int64)
        self.issame = np.asarray(self.issame, dtype=bool)
        n = self.issame.shape[0]
        if self.idx0.shape != (n,) or self.idx1.shape != (n,):
            raise ValueError(
                f"{self.source}: idx0, idx1 and issame must have one entry per pair, got "
                f"shapes {self.idx0.shape}, {self.idx1.shape} and {self.issame.shape}"
            )
        images = len(self.dataset)  # type: ignore[arg-type]
        if n and (
            min(self.idx0.min(), self.idx1.min()) < 0
            or max(self.idx0.max(), self.idx1.max()) >= images
        ):
            raise ValueError(f"{self.source}: a pair refers to an image outside 0..{images - 1}")

    @property
    def num_pairs(self) -> int:
        return int(self.issame.shape[0])

    @property
    def num_images(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"PairSet({self.name!r}, {self.kind}, pairs={self.num_pairs}, "
            f"images={self.num_images}, source={self.source!r})"
        )


def _default_name(path: str | os.PathLike, name: str | None) -> str:
    return name if name else display_name(Path(path).stem)


def _input_transform(input_size: Sequence[int] | None) -> FaceTransform:
    return eval_transform(tuple(input_size) if input_size is not None else None)


def open_bin_set(
    path: str | os.PathLike, name: str | None = None, input_size: Sequence[int] | None = None
) -> PairSet:
    """An InsightFace validation ``.bin``: image ``2i`` and ``2i + 1`` form pair ``i``."""
    dataset = BinPairDataset(path, _input_transform(input_size))
    pairs = len(dataset.issame)
    return PairSet(
        name=_default_name(path, name),
        dataset=dataset,
        idx0=np.arange(0, 2 * pairs, 2),
        idx1=np.arange(1, 2 * pairs, 2),
        issame=dataset.issame,
        source=str(path),
        kind="bin",
    )


def _from_pair_list(
    pair_list: PairList, name: str, kind: PairSetKind, input_size: Sequence[int] | None
) -> PairSet:
    check_images_exist(pair_list)
    idx0, idx1 = pair_list.pair_indices()
    return PairSet(
        name=name,
        dataset=PairImageDataset(pair_list, _input_transform(input_size)),
        idx0=idx0,
        idx1=idx1,
        issame=pair_list.issame,
        source=pair_list.source,
        kind=kind,
    )


def open_lfw_set(
    pairs_txt: str | os.PathLike,
    image_root: str | os.PathLike,
    name: str | None = None,
    input_size: Sequence[int] | None = None,
    ext: str = "jpg",
) -> PairSet:
    """LFW's ``pairs.txt`` with its image folder (``root/name/name_000k.jpg``); every image
    must exist (the error lists the missing ones). The default name is ``LFW``."""
    _require_file(pairs_txt, "LFW pairs file")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"LFW image folder not found: {image_root} (for {pairs_txt})")
    pair_list = read_lfw_pairs(pairs_txt, image_root, ext=ext)
    return _from_pair_list(pair_list, name or "LFW", "lfw", input_size)


def open_pair_list_set(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    name: str | None = None,
    input_size: Sequence[int] | None = None,
) -> PairSet:
    """An OpenSphere pair list (``label path0 path1`` lines); relative image paths are
    taken from ``root`` (default: the list's own folder)."""
    _require_file(path, "pair list")
    pair_list = read_pair_list(path, root)
    return _from_pair_list(pair_list, _default_name(path, name), "pair-list", input_size)


def _require_file(path: str | os.PathLike, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")


def _looks_like_lfw_pairs(path: str | os.PathLike) -> bool:
    """LFW files open with a header of one or two integers (``10 300``); OpenSphere lists
    have three fields per line."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            fields = line.split()
            if fields:
                return len(fields) <= 2 and all(f.isdigit() for f in fields)
    return False


def open_pair_set(
    path: str | os.PathLike,
    name: str | None = None,
    input_size: Sequence[int] | None = None,
    lfw_root: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
) -> PairSet:
    """Open any supported verification file by what it is.

    - ``*.bin``: an InsightFace validation ``.bin``;
    - a text file whose first line is ``folds n`` or ``n``: LFW ``pairs.txt`` (needs
      ``lfw_root``, the folder of per-person image folders);
    - any other text file: an OpenSphere pair list (images relative to ``root`` or the
      list's folder).

    Args:
        path: the file.
        name: the set's name (default from the file name, see :func:`display_name`).
        input_size: the model's (H, W); images of another size are resized to it.
        lfw_root: image folder for LFW ``pairs.txt`` files.
        root: image root for OpenSphere pair lists.

    Raises:
        FileNotFoundError: the file (or an image it names) is missing.
        ValueError: the file is malformed (naming the file and line), or an LFW file was
            given without ``lfw_root``.
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"verification data not found: {path}")
    if os.path.isdir(path):
        raise ValueError(
            f"{path}: is a folder; expected a .bin file, an LFW pairs.txt or an OpenSphere "
            "pair list (label path0 path1 lines)"
        )
    if path.lower().endswith(".bin"):
        return open_bin_set(path, name, input_size)
    if _looks_like_lfw_pairs(path):
        if lfw_root is None:
            raise ValueError(
                f"{path}: looks like an LFW pairs.txt (its header is 'folds pairs'); give the "
                "LFW image folder with lfw_root (--lfw-root)"
            )
        return open_lfw_set(path, lfw_root, name, input_size)
    return open_pair_list_set(path, root, name, input_size)
