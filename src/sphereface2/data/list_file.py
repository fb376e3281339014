"""Training lists: ``path label`` lines (OpenSphere, InsightFace ``label.txt``), ``path name``
lines (OpenSphere's VGGFace2 lists), ``path`` lines (label from the parent folder) and
MXNet ``.lst`` files (``index<TAB>label<TAB>path``).

Also home of :class:`SampleListDataset`, the dataset over ``(image path, label)`` samples
that the list and folder readers share, and of :func:`load_skipping_corrupt`, the one
place that decides what happens to an image that fails to decode.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from sphereface2.data.decode import read_image
from sphereface2.data.text_lines import numbered_lines
from sphereface2.data.transforms import Transform, to_tensor

_MAX_LABEL = 2**31 - 1
# A label column entry that reads as a number ("3", "-1", "1.000000", "1e3") is a numeric
# label (validated as a class index); anything else is an identity name.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
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


def _is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None


class _LabelColumn:
    """The second column of ``path label`` lines: integer labels or identity names.

    The first data line decides; a later line of the other kind is an error, so a typo in
    a numeric list is never silently read as a name.
    """

    def __init__(self) -> None:
        self.first: tuple[int, str] | None = None  # (line, text) of the first label
        self.numbers: list[int] = []
        self.names: list[str] = []

    def add(self, text: str, line_no: int, where: str) -> None:
        if self.first is None:
            self.first = (line_no, text)
        first_line, first_text = self.first
        if _is_number(text) != _is_number(first_text):
            kinds = {True: "the integer label", False: "the identity name"}
            raise ListFileError(
                f"{where}: {kinds[_is_number(text)]} {text!r} but line {first_line} has "
                f"{kinds[_is_number(first_text)]} {first_text!r}; use integer labels on every "
                f"line or identity names on every line"
            )
        if _is_number(text):
            self.numbers.append(_parse_label(text, where))
        else:
            self.names.append(text)


def _labels_from_names(names: list[str]) -> tuple[list[int], list[str]]:
    class_names = sorted(set(names))
    index = {name: i for i, name in enumerate(class_names)}
    return [index[name] for name in names], class_names


def read_training_list(
    path: str | os.PathLike, root: str | os.PathLike | None = None
) -> tuple[list[tuple[str, int]], list[str] | None]:
    """Read a training list into ``([(image_path, label), ...], class_names)``, file order.

    Accepted lines (blank lines and ``#`` comments are skipped):

    - ``relative/path label``, whitespace- or tab-separated (OpenSphere lists and
      InsightFace's ``label.txt``); a tab-separated line may have spaces in its path;
    - ``relative/path name`` with string identity names (OpenSphere's VGGFace2 lists,
      ``n000002/0001_01.jpg n000002``): names map to labels in sorted name order;
    - ``relative/path`` alone: the label is the parent folder's name, mapped likewise;
    - MXNet ``.lst`` files (by extension): ``index<TAB>label[<TAB>label...]<TAB>path``,
      the first label is used.

    A second column that is a number on the first data line must be one on every line
    (and then an integer >= 0); otherwise it must be a name on every line. ``class_names``
    (``class_names[label]`` is the name) is ``None`` for integer labels. Relative paths
    are taken relative to ``root`` (default: the list's folder). All data lines must have
    the same form. The file must be UTF-8. Errors name the file and line.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"list file not found: {path}")
    root = str(root) if root is not None else os.path.dirname(os.path.abspath(path))
    is_lst = path.lower().endswith(".lst")
    paths: list[str] = []
    column = _LabelColumn()
    folders: list[str] = []
    form: tuple[int, int] | None = None  # (fields per line, first line) of the first data line
    for line_no, line in numbered_lines(path, ListFileError):
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
            column.numbers.append(_parse_label(fields[1], where))
            paths.append(_resolve(root, fields[-1]))
            continue
        fields = [f.strip() for f in line.strip().split("\t")] if "\t" in line else line.split()
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
            column.add(fields[1], line_no, where)
        else:
            folder = os.path.basename(os.path.dirname(os.path.normpath(fields[0])))
            if not folder:
                raise ListFileError(
                    f"{where}: no label and no parent folder to take it from: {fields[0]!r}"
                )
            folders.append(folder)
    if not paths:
        raise ListFileError(f"{path}: no samples found (empty list)")
    class_names: list[str] | None = None
    labels = column.numbers
    if column.names or folders:
        labels, class_names = _labels_from_names(column.names or folders)
    return list(zip(paths, labels)), class_names


def read_list_file(
    path: str | os.PathLike, root: str | os.PathLike | None = None
) -> list[tuple[str, int]]:
    """The ``[(image_path, label), ...]`` of :func:`read_training_list`, without the names."""
    return read_training_list(path, root)[0]


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
    """The images of a list file (see :func:`read_training_list`).

    ``class_names[label]`` is the identity name of lists that name identities (``path
    name`` lines, or ``path`` lines labelled by folder); ``None`` for integer labels.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        root: str | os.PathLike | None = None,
        transform: Transform | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        samples, class_names = read_training_list(path, root)
        super().__init__(
            samples,
            transform,
            skip_corrupt=skip_corrupt,
            source=str(path),
            class_names=class_names,
        )
