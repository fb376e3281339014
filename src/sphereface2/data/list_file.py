"""Training lists: ``path label`` lines (OpenSphere, InsightFace ``label.txt``), ``path``
lines (label from the parent folder) and MXNet ``.lst`` files (``index<TAB>label<TAB>path``).

Also home of :class:`SampleListDataset`, the dataset over ``(image path, label)`` samples
that the list and folder readers share, and of :func:`load_skipping_corrupt`, the one
place that decides what happens to an image that fails to decode.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from sphereface2.data.decode import read_image
from sphereface2.data.transforms import Transform, to_tensor

_MAX_LABEL = 2**31 - 1
T = TypeVar("T")


class ListFileError(ValueError):
    """A malformed list file; the message names the file and the line."""


def _parse_label(text: str, where: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise ListFileError(f"{where}: label must be an integer, got {text!r}") from None
    if not value.is_integer():
        raise ListFileError(f"{where}: label must be an integer, got {text!r}")
    if value < 0:
        raise ListFileError(f"{where}: negative label {text!r} (labels are class indices >= 0)")
    if value > _MAX_LABEL:
        raise ListFileError(f"{where}: label {text!r} is out of range (must be < 2^31)")
    return int(value)


def _resolve(root: str, path: str) -> str:
    # os.path.join keeps absolute paths as they are.
    return os.path.normpath(os.path.join(root, path))


def read_list_file(
    path: str | os.PathLike, root: str | os.PathLike | None = None
) -> list[tuple[str, int]]:
    """Read a training list into ``[(image_path, label), ...]`` in file order.

    Accepted lines (blank lines and ``#`` comments are skipped):

    - ``relative/path label``, whitespace- or tab-separated (OpenSphere lists and
      InsightFace's ``label.txt``); a tab-separated line may have spaces in its path;
    - ``relative/path`` alone: the label is the parent folder's name, mapped to
      contiguous integers in sorted name order;
    - MXNet ``.lst`` files (by extension): ``index<TAB>label[<TAB>label...]<TAB>path``,
      the first label is used.

    Relative paths are taken relative to ``root`` (default: the list's folder). All data
    lines must have the same form. Errors name the file and line.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"list file not found: {path}")
    root = str(root) if root is not None else os.path.dirname(os.path.abspath(path))
    is_lst = path.lower().endswith(".lst")
    paths: list[str] = []
    labels: list[int] = []
    folders: list[str] = []
    form: tuple[int, int] | None = None  # (fields per line, first line) of the first data line
    with open(path, encoding="utf-8") as f:
        for line_no, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            where = f"{path}:{line_no}"
            if is_lst:
                fields = line.rstrip().split("\t")
                if len(fields) < 3:
                    raise ListFileError(
                        f"{where}: an MXNet .lst line needs 'index<TAB>label<TAB>path', "
                        f"got {len(fields)} field(s): {line!r}"
                    )
                labels.append(_parse_label(fields[1], where))
                paths.append(_resolve(root, fields[-1]))
                continue
            fields = line.strip().split("\t") if "\t" in line else line.split()
            if len(fields) > 2:
                raise ListFileError(
                    f"{where}: too many fields ({len(fields)}); expected 'path label' or "
                    f"'path' (MXNet 'index<TAB>label<TAB>path' lists need the .lst extension): "
                    f"{line!r}"
                )
            if form is None:
                form = (len(fields), line_no)
            elif len(fields) != form[0]:
                raise ListFileError(
                    f"{where}: {len(fields)} field(s) but line {form[1]} has {form[0]}; "
                    f"use 'path label' on every line or 'path' on every line"
                )
            paths.append(_resolve(root, fields[0]))
            if len(fields) == 2:
                labels.append(_parse_label(fields[1], where))
            else:
                folder = os.path.basename(os.path.dirname(os.path.normpath(fields[0])))
                if not folder:
                    raise ListFileError(
                        f"{where}: no label and no parent folder to take it from: {fields[0]!r}"
                    )
                folders.append(folder)
    if not paths:
        raise ListFileError(f"{path}: no samples found (empty list)")
    if folders:
        index = {name: i for i, name in enumerate(sorted(set(folders)))}
        labels = [index[name] for name in folders]
    return list(zip(paths, labels))


def load_skipping_corrupt(
    index: int,
    count: int,
    load: Callable[[int], T],
    describe: Callable[[int], str],
    corrupt: dict[int, str] | None,
) -> T:
    """``load(index)``, or with ``corrupt`` given, the next sample that loads.

    ``corrupt=None`` means no skipping: the error of ``load`` (which names the file and
    record) propagates. Otherwise a sample whose ``load`` raises ``ValueError``/``OSError``
    is recorded in ``corrupt`` (index -> message), warned about once, and replaced by the
    next index in order (wrapping around), so the substitute is deterministic. Raises
    ``RuntimeError`` when every sample fails instead of retrying forever.
    """
    if corrupt is None:
        return load(index)
    for step in range(count):
        i = (index + step) % count
        if i in corrupt:
            continue
        try:
            return load(i)
        except (ValueError, OSError) as err:
            name = describe(i)
            corrupt[i] = message = str(err) if name in str(err) else f"{name}: {err}"
            warnings.warn(f"skipping corrupt sample: {message}", RuntimeWarning, stacklevel=3)
    raise RuntimeError(f"all {count} samples failed to load; first: {next(iter(corrupt.values()))}")


class SampleListDataset(Dataset):
    """Images from a list of ``(path, label)``: yields ``(transform(rgb), label)``.

    ``transform`` defaults to :func:`~sphereface2.data.transforms.to_tensor`. With
    ``skip_corrupt`` an unreadable image is replaced by the next readable one and listed
    in :attr:`corrupt_samples` (per process: each DataLoader worker keeps its own list).
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        transform: Transform | None = None,
        skip_corrupt: bool = False,
        source: str = "",
        class_names: Sequence[str] | None = None,
    ) -> None:
        if not samples:
            raise ValueError(f"{source or 'dataset'}: no samples")
        self.paths = [str(p) for p, _ in samples]
        self.labels = np.asarray([int(label) for _, label in samples], dtype=np.int64)
        if self.labels.min() < 0:
            bad = int(np.argmin(self.labels))
            raise ValueError(f"{self.paths[bad]}: negative label {int(self.labels[bad])}")
        self.num_classes = int(self.labels.max()) + 1
        self.class_names = list(class_names) if class_names is not None else None
        self.transform = transform if transform is not None else to_tensor
        self.skip_corrupt = skip_corrupt
        self.source = source
        self._corrupt: dict[int, str] | None = {} if skip_corrupt else None

    @property
    def samples(self) -> list[tuple[str, int]]:
        return list(zip(self.paths, self.labels.tolist()))

    @property
    def corrupt_samples(self) -> list[str]:
        """The error (naming the file) of each sample skipped so far in this process."""
        if not self._corrupt:
            return []
        return [msg for _, msg in sorted(self._corrupt.items())]

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> tuple[np.ndarray, int]:
        return read_image(self.paths[index]), int(self.labels[index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        rgb, label = load_skipping_corrupt(
            index, len(self), self._load, lambda i: self.paths[i], self._corrupt
        )
        return self.transform(rgb), label

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.source!r}, images={len(self)}, "
            f"classes={self.num_classes})"
        )


class ListFileDataset(SampleListDataset):
    """The images of a list file (see :func:`read_list_file`)."""

    def __init__(
        self,
        path: str | os.PathLike,
        root: str | os.PathLike | None = None,
        transform: Transform | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        super().__init__(
            read_list_file(path, root), transform, skip_corrupt=skip_corrupt, source=str(path)
        )
