"""Open any supported training set by what its path is."""

from __future__ import annotations

import os
from pathlib import Path

from sphereface2.data.image_folder import ImageFolderDataset, scan_image_folder
from sphereface2.data.list_file import ListFileDataset, read_training_list
from sphereface2.data.recordio_dataset import RecordIODataset
from sphereface2.data.transforms import Transform

LIST_SUFFIXES = (".txt", ".lst")
# A folder holding one of these (and no train.rec) is read as that list, not as identities.
FOLDER_LISTS = ("label.txt", "train.lst", "train.txt")

TrainingSet = RecordIODataset | ListFileDataset | ImageFolderDataset

_SUPPORTED = (
    "a folder with train.rec/train.idx, a .rec file, a .txt/.lst list, a folder with "
    f"{'/'.join(FOLDER_LISTS)}, or a folder with one sub-folder per identity"
)


def detect_training_set(path: str | os.PathLike) -> tuple[str, str]:
    """``(kind, file)``: kind is ``"recordio"``, ``"list"`` or ``"folder"``.

    ``file`` is the concrete path to read (e.g. ``dir/label.txt`` for a folder holding a
    list). Errors name the path and what would have been accepted.
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"training set not found: {path}")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "train.rec")):
            return "recordio", path
        for name in FOLDER_LISTS:
            if os.path.isfile(os.path.join(path, name)):
                return "list", os.path.join(path, name)
        return "folder", path
    suffix = Path(path).suffix.lower()
    if suffix == ".rec":
        return "recordio", path
    if suffix in LIST_SUFFIXES:
        return "list", path
    raise ValueError(f"{path}: not a training set; expected {_SUPPORTED}")


def open_training_set(
    path: str | os.PathLike,
    transform: Transform | None = None,
    skip_corrupt: bool = False,
) -> TrainingSet:
    """The dataset at ``path`` (see :func:`detect_training_set`).

    Every returned dataset has ``num_classes``, ``labels`` (int64 array),
    ``class_names`` (``class_names[label]`` is the identity's name, or ``None`` where the
    set has integer labels only) and ``__getitem__(i) -> (image tensor, label)``.
    """
    kind, file = detect_training_set(path)
    if kind == "recordio":
        return RecordIODataset(file, transform=transform, skip_corrupt=skip_corrupt)
    if kind == "list":
        return ListFileDataset(file, transform=transform, skip_corrupt=skip_corrupt)
    return ImageFolderDataset(file, transform=transform, skip_corrupt=skip_corrupt)


def image_samples(
    path: str | os.PathLike, root: str | os.PathLike | None = None
) -> tuple[list[tuple[str, int]], list[str] | None]:
    """``(samples, class_names)`` of an image-file training set (list or folder).

    ``root`` applies to lists only. ``class_names`` is ``None`` for lists with integer
    labels.
    """
    kind, file = detect_training_set(path)
    if kind == "recordio":
        raise ValueError(f"{path}: is already a RecordIO training set")
    if kind == "list":
        return read_training_list(file, root)
    return scan_image_folder(file)
