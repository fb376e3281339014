"""IJB-B / IJB-C on disk: where a set's meta files and loose crops are, and the set's images
aligned from their landmarks as a dataset (the meta files' own readers are
:mod:`sphereface2.data.ijb_meta`; the evaluation is :mod:`sphereface2.evaluate.ijb_runner`).

Layout (InsightFace's ``IJB_release`` folder)::

    IJB_release/IJBC/meta/ijbc_face_tid_mid.txt, ijbc_name_5pts_score.txt,
                          ijbc_template_pair_label.txt,
                          ijbc_1N_gallery_G1.csv, ijbc_1N_gallery_G2.csv, ijbc_1N_probe_mixed.csv
    IJB_release/IJBC/loose_crop/1.jpg ...

(``ijbb_`` and S1/S2 for IJB-B). ``ijb_dir`` may be ``IJB_release``, its ``IJBC`` folder, or a
folder holding ``IJB_release``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sphereface2.data.alignment import align_face
from sphereface2.data.decode import ImageDecodeError, read_image
from sphereface2.data.ijb_meta import IJBMeta, read_ijb_meta
from sphereface2.data.transforms import eval_transform

#: Sets and their 1:N galleries.
IJB_GALLERIES = {"IJBB": ("S1", "S2"), "IJBC": ("G1", "G2")}
#: Table names.
IJB_DISPLAY_NAMES = {"IJBB": "IJB-B", "IJBC": "IJB-C"}


# ----------------------------------------------------------------------------- layout


def normalize_ijb_name(name: str) -> str:
    """``IJBB`` or ``IJBC`` from any spelling (``ijbc``, ``IJB-C``, ``ijb_c``)."""
    key = name.upper().replace("-", "").replace("_", "")
    if key not in IJB_GALLERIES:
        raise ValueError(f"unknown IJB set {name!r}; valid: IJBB, IJBC")
    return key


@dataclass(frozen=True)
class IJBLayout:
    """Where one IJB set's files are.

    Attributes:
        name: ``IJBB`` or ``IJBC``.
        set_dir: the set's folder (holding ``meta``).
        meta_dir: the meta files' folder.
        image_dir: the loose crops' folder.
    """

    name: str
    set_dir: Path
    meta_dir: Path
    image_dir: Path

    @property
    def display_name(self) -> str:
        return IJB_DISPLAY_NAMES[self.name]

    def meta_file(self, kind: str) -> Path:
        """``<meta>/<ijbb|ijbc>_<kind>``, e.g. ``kind="face_tid_mid.txt"``."""
        return self.meta_dir / f"{self.name.lower()}_{kind}"

    @property
    def tid_mid_file(self) -> Path:
        return self.meta_file("face_tid_mid.txt")

    @property
    def landmarks_file(self) -> Path:
        return self.meta_file("name_5pts_score.txt")

    @property
    def pairs_file(self) -> Path:
        return self.meta_file("template_pair_label.txt")

    @property
    def gallery_files(self) -> tuple[Path, ...]:
        return tuple(self.meta_file(f"1N_gallery_{g}.csv") for g in IJB_GALLERIES[self.name])

    @property
    def probe_file(self) -> Path:
        return self.meta_file("1N_probe_mixed.csv")

    def missing_1n_files(self) -> list[Path]:
        return [p for p in (*self.gallery_files, self.probe_file) if not p.is_file()]


def locate_ijb(
    ijb_dir: str | os.PathLike,
    name: str | None = None,
    image_dir: str | os.PathLike | None = None,
) -> IJBLayout:
    """Find an IJB set's meta and image folders.

    Args:
        ijb_dir: the set's folder (holding ``meta``), ``IJB_release``, or its parent.
        name: ``IJBB`` or ``IJBC`` (any spelling); None: the one set found there.
        image_dir: the loose crops (default: ``<set>/loose_crop``).

    Raises:
        FileNotFoundError: no such folder or no meta files (the message lists where it looked).
        ValueError: ``name`` is None and both sets are there.
    """
    root = Path(ijb_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"IJB folder not found: {root}")
    names = [normalize_ijb_name(name)] if name else list(IJB_GALLERIES)
    found: list[tuple[str, Path]] = []
    looked: list[Path] = []
    for n in names:
        for set_dir in (root, root / n, root / "IJB_release" / n):
            meta = set_dir / "meta" / f"{n.lower()}_face_tid_mid.txt"
            looked.append(meta)
            if meta.is_file():
                found.append((n, set_dir))
                break
    if not found:
        raise FileNotFoundError(
            f"{root}: no IJB meta files; looked for " + ", ".join(str(p) for p in looked)
        )
    if len(found) > 1:
        raise ValueError(
            f"{root}: holds both IJBB and IJBC; say which one to evaluate (name / --ijb-name)"
        )
    n, set_dir = found[0]
    images = Path(image_dir) if image_dir is not None else set_dir / "loose_crop"
    if not images.is_dir():
        raise FileNotFoundError(f"IJB image folder not found: {images} (for {set_dir})")
    return IJBLayout(n, set_dir, set_dir / "meta", images)


def line_of_record(path: str | os.PathLike, index: int) -> int:
    """The 1-based line number of the ``index``-th (0-based) non-blank line of a text file
    (the meta readers skip blank lines, so record numbers and line numbers can differ)."""
    seen = -1
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                seen += 1
                if seen == index:
                    return lineno
    raise IndexError(f"{path} has no record {index + 1}")


# ----------------------------------------------------------------------------- dataset


class IJBDataset(Dataset):
    """The images of an IJB set, aligned: yields ``(image tensor (3, H, W), index)``.

    Each loose crop is aligned from its 5 landmarks to ``align_size`` (default: the model's
    ``input_size``; 112x112 is the ArcFace crop) and resized to ``input_size`` if they differ,
    then normalised as in training (``(x - 127.5) / 127.5``).

    Args:
        ijb_dir: see :func:`locate_ijb`.
        name: ``IJBB`` or ``IJBC`` (None: the one found).
        image_dir: the loose crops (default ``<set>/loose_crop``).
        input_size: (H, W) of the tensors.
        align_size: (H, W) of the aligned crop (default ``input_size``).
        check_images: check up front that every listed image exists.

    Raises:
        IJBFormatError: a malformed meta file (naming the file and line).
        FileNotFoundError: a listed image is missing (naming it and its meta line).
    """

    def __init__(
        self,
        ijb_dir: str | os.PathLike,
        name: str | None = "IJBC",
        image_dir: str | os.PathLike | None = None,
        input_size: Sequence[int] = (112, 112),
        align_size: Sequence[int] | None = None,
        check_images: bool = True,
    ) -> None:
        self.layout = locate_ijb(ijb_dir, name, image_dir)
        self.meta: IJBMeta = read_ijb_meta(self.layout.meta_dir, self.layout.name, pairs=False)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        size = align_size if align_size is not None else self.input_size
        self.align_size = (int(size[0]), int(size[1]))
        self.transform = eval_transform(self.input_size)
        if check_images:
            self._check_images()

    @property
    def name(self) -> str:
        return self.layout.name

    @property
    def image_names(self) -> list[str]:
        return self.meta.image_names

    @property
    def template_ids(self) -> np.ndarray:
        return self.meta.template_ids

    @property
    def media_ids(self) -> np.ndarray:
        return self.meta.media_ids

    @property
    def faceness(self) -> np.ndarray:
        return self.meta.faceness

    @property
    def landmarks(self) -> np.ndarray:
        return self.meta.landmarks

    def image_path(self, index: int) -> Path:
        return self.layout.image_dir / self.meta.image_names[index]

    def _where(self, index: int) -> str:
        path = self.layout.landmarks_file
        return f"{path}:{line_of_record(path, index)}"

    def _check_images(self) -> None:
        # One directory listing instead of one stat per image (IJB-C has 469,375 images).
        listed = set(os.listdir(self.layout.image_dir))
        missing = [
            i
            for i, n in enumerate(self.meta.image_names)
            if not (n in listed or ("/" in n and (self.layout.image_dir / n).is_file()))
        ]
        if missing:
            first = missing[0]
            raise FileNotFoundError(
                f"{self.image_path(first)}: image not found (listed at {self._where(first)}); "
                f"{len(missing)} of {len(self)} listed images are missing"
            )

    def __len__(self) -> int:
        return len(self.meta.image_names)

    def crop(self, index: int) -> np.ndarray:
        """The aligned RGB uint8 crop of image ``index`` (``align_size``)."""
        path = self.image_path(index)
        try:
            rgb = read_image(str(path))
            return align_face(rgb, self.meta.landmarks[index], self.align_size)
        except (ImageDecodeError, ValueError) as err:
            raise ValueError(f"{path} (listed at {self._where(index)}): {err}") from None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} IJB images")
        return self.transform(self.crop(index)), index

    def __repr__(self) -> str:
        return (
            f"IJBDataset({self.layout.display_name}, images={len(self)}, "
            f"templates={np.unique(self.meta.template_ids).shape[0]}, "
            f"dir={str(self.layout.set_dir)!r})"
        )
