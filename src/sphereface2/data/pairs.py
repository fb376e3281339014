"""Verification pair lists: OpenSphere ``label path0 path1`` lists and LFW's ``pairs.txt``.

A :class:`PairList` holds the two image paths and the genuine/impostor flag of every pair,
in file order (the 10-fold protocols take folds in file order). Many pairs share images,
so :meth:`PairList.unique_paths` and :meth:`PairList.pair_indices` let a caller embed each
image once and look the embeddings up per pair; :class:`PairImageDataset` iterates over
exactly those unique images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sphereface2.data.decode import read_image
from sphereface2.data.text_lines import numbered_lines
from sphereface2.data.transforms import Transform, to_tensor


class PairListError(ValueError):
    """A malformed pair list; the message names the file and the line."""


@dataclass(eq=False)
class PairList:
    """Pairs of image paths with a same-identity flag, in file order.

    ``line_numbers[i]`` is the 1-based line of pair ``i`` in ``source`` (for error
    messages); ``folds[i]`` is its fold when the file defines folds (LFW), else ``None``.
    """

    paths0: list[str]
    paths1: list[str]
    issame: np.ndarray
    source: str
    line_numbers: np.ndarray | None = None
    folds: np.ndarray | None = None
    _unique: tuple[list[str], np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.issame = np.asarray(self.issame, dtype=bool)
        n = len(self.paths0)
        if len(self.paths1) != n or self.issame.shape != (n,):
            raise ValueError(
                f"{self.source}: paths0, paths1 and issame must have one entry per pair, got "
                f"{len(self.paths0)}, {len(self.paths1)} and {self.issame.shape}"
            )
        for name in ("line_numbers", "folds"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.int64)
                if value.shape != (n,):
                    raise ValueError(f"{self.source}: {name} must have shape ({n},)")
                setattr(self, name, value)

    def __len__(self) -> int:
        return len(self.paths0)

    def _index(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        if self._unique is None:
            position: dict[str, int] = {}
            for path in (*self.paths0, *self.paths1):
                position.setdefault(path, len(position))
            idx0 = np.array([position[p] for p in self.paths0], dtype=np.int64)
            idx1 = np.array([position[p] for p in self.paths1], dtype=np.int64)
            self._unique = (list(position), idx0, idx1)
        return self._unique

    def unique_paths(self) -> list[str]:
        """Every distinct image path once: all of ``paths0`` first, then new ones of ``paths1``."""
        return list(self._index()[0])

    def pair_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """``(idx0, idx1)``: each pair's two image positions in ``unique_paths()``."""
        _, idx0, idx1 = self._index()
        return idx0.copy(), idx1.copy()

    def line_of(self, pair: int) -> int | None:
        """1-based line of ``pair`` in the source file, when known."""
        return None if self.line_numbers is None else int(self.line_numbers[pair])


def _resolve(root: str, path: str) -> str:
    # os.path.join keeps absolute paths as they are, which is what lists with absolute paths want.
    return os.path.normpath(os.path.join(root, path))


def read_pair_list(path: str | os.PathLike, root: str | os.PathLike | None = None) -> PairList:
    """Read an OpenSphere pair list: one ``label path0 path1`` line per pair, label 0 or 1.

    Relative image paths are taken relative to ``root`` (default: the list's own folder).
    Blank lines are skipped; any other malformed line raises :class:`PairListError`
    naming the file and line.
    """
    path = str(path)
    root = str(root) if root is not None else os.path.dirname(os.path.abspath(path))
    paths0: list[str] = []
    paths1: list[str] = []
    issame: list[bool] = []
    lines: list[int] = []
    for line_no, line in numbered_lines(path, PairListError):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise PairListError(
                f"{path}:{line_no}: expected 'label path0 path1' (3 fields), "
                f"got {len(fields)}: {line.strip()!r}"
            )
        label, p0, p1 = fields
        if label not in ("0", "1"):
            raise PairListError(f"{path}:{line_no}: label must be 0 or 1, got {label!r}")
        paths0.append(_resolve(root, p0))
        paths1.append(_resolve(root, p1))
        issame.append(label == "1")
        lines.append(line_no)
    if not issame:
        raise PairListError(f"{path}: no pairs found (empty pair list)")
    return PairList(paths0, paths1, np.array(issame), source=path, line_numbers=np.array(lines))


def _parse_int(text: str, path: str, line_no: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise PairListError(f"{path}:{line_no}: {what} must be an integer, got {text!r}") from None
    if value < 1:
        raise PairListError(f"{path}:{line_no}: {what} must be >= 1, got {value}")
    return value


def _lfw_image(root: str, name: str, number: int, ext: str) -> str:
    return os.path.join(root, name, f"{name}_{number:04d}.{ext}")


def read_lfw_pairs(
    pairs_txt: str | os.PathLike, image_root: str | os.PathLike, ext: str = "jpg"
) -> PairList:
    """Read LFW's ``pairs.txt`` (view 2) or ``pairsDevTrain/Test.txt`` (view 1).

    The header is ``"folds n"`` (view 2: ``10 300``) or just ``"n"`` (view 1, one fold).
    Each fold is ``n`` matched lines ``name i j`` then ``n`` mismatched lines
    ``name1 i name2 j``; image ``k`` of ``name`` is ``image_root/name/name_000k.<ext>``.
    Pairs keep file order and ``folds`` records each pair's fold. Counts are checked
    against the header; errors name the file and line.
    """
    pairs_txt = str(pairs_txt)
    image_root = str(image_root)
    numbered = [(i, line.split()) for i, line in numbered_lines(pairs_txt, PairListError)]
    numbered = [(i, fields) for i, fields in numbered if fields]
    if not numbered:
        raise PairListError(f"{pairs_txt}: empty file (expected a header such as '10 300')")
    header_line, header = numbered[0]
    if len(header) == 1:
        num_folds, per_class = 1, _parse_int(header[0], pairs_txt, header_line, "pair count")
    elif len(header) == 2:
        num_folds = _parse_int(header[0], pairs_txt, header_line, "fold count")
        per_class = _parse_int(header[1], pairs_txt, header_line, "pairs per class")
    else:
        raise PairListError(
            f"{pairs_txt}:{header_line}: header must be 'folds pairs_per_class' (e.g. '10 300'), "
            f"got {' '.join(header)!r}"
        )
    body = numbered[1:]
    expected = num_folds * 2 * per_class
    if len(body) != expected:
        raise PairListError(
            f"{pairs_txt}: header says {num_folds} fold(s) x 2 x {per_class} pairs = {expected} "
            f"pair lines, found {len(body)}"
        )

    paths0: list[str] = []
    paths1: list[str] = []
    issame: list[bool] = []
    lines: list[int] = []
    folds: list[int] = []
    for k, (line_no, fields) in enumerate(body):
        fold, within = divmod(k, 2 * per_class)
        matched = within < per_class
        if matched:
            if len(fields) != 3:
                raise PairListError(
                    f"{pairs_txt}:{line_no}: fold {fold + 1} line {within + 1} should be a matched "
                    f"pair 'name n1 n2' (3 fields), got {len(fields)}: {' '.join(fields)!r}"
                )
            name0, name1 = fields[0], fields[0]
            n0, n1 = fields[1], fields[2]
        else:
            if len(fields) != 4:
                raise PairListError(
                    f"{pairs_txt}:{line_no}: fold {fold + 1} line {within + 1} should be a "
                    f"mismatched pair 'name1 n1 name2 n2' (4 fields), got {len(fields)}: "
                    f"{' '.join(fields)!r}"
                )
            name0, n0, name1, n1 = fields
        i0 = _parse_int(n0, pairs_txt, line_no, "image number")
        i1 = _parse_int(n1, pairs_txt, line_no, "image number")
        paths0.append(_lfw_image(image_root, name0, i0, ext))
        paths1.append(_lfw_image(image_root, name1, i1, ext))
        issame.append(matched)
        lines.append(line_no)
        folds.append(fold)
    return PairList(
        paths0,
        paths1,
        np.array(issame),
        source=pairs_txt,
        line_numbers=np.array(lines),
        folds=np.array(folds),
    )


def check_images_exist(pair_list: PairList, show: int = 5) -> None:
    """Raise one :class:`FileNotFoundError` if any image of any pair is missing.

    The message names the pairs file, the line of the first pair with a missing image,
    the first ``show`` missing paths and how many distinct images are missing in total.
    """
    missing: list[str] = []
    first_pair: int | None = None
    checked: dict[str, bool] = {}
    for i, (p0, p1) in enumerate(zip(pair_list.paths0, pair_list.paths1)):
        for p in (p0, p1):
            if p not in checked:
                checked[p] = os.path.isfile(p)
                if not checked[p]:
                    missing.append(p)
            if not checked[p] and first_pair is None:
                first_pair = i
    if not missing:
        return
    assert first_pair is not None
    line = pair_list.line_of(first_pair)
    where = f"{pair_list.source}:{line}" if line is not None else pair_list.source
    listed = "\n  ".join(missing[:show])
    more = f"\n  ... and {len(missing) - show} more" if len(missing) > show else ""
    raise FileNotFoundError(
        f"{where}: {len(missing)} of {len(checked)} images named by the pair list are missing "
        f"(first in pair {first_pair + 1}):\n  {listed}{more}"
    )


class PairImageDataset(Dataset):
    """Map-style dataset over the unique images of a :class:`PairList`.

    Item ``i`` is ``(transform(rgb), i)`` for ``pair_list.unique_paths()[i]``; combine the
    embeddings with ``pair_list.pair_indices()``. The default transform only normalises.
    """

    def __init__(self, pair_list: PairList, transform: Transform | None = None) -> None:
        self.pair_list = pair_list
        self.paths = pair_list.unique_paths()
        self.transform = transform if transform is not None else to_tensor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(read_image(self.paths[index])), index

    def __repr__(self) -> str:
        return f"PairImageDataset({len(self.paths)} images from {Path(self.pair_list.source).name})"
