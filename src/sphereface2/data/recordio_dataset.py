"""Training sets stored as InsightFace/MXNet RecordIO (``train.rec``, ``train.idx``, ``property``).

Two layouts are recognised:

- MS1M layout: record 0 is a header-only meta record (flag 2, labels
  ``[id_start, id_end]``); images are keys ``1 .. id_start-1`` and keys
  ``id_start .. id_end-1`` hold one record per identity with ``[first_key, end_key]``.
- Plain list (e.g. MXNet ``im2rec`` output): every key is an image.

Labels are read from record headers only, never by decoding images; in the MS1M layout
they come from the identity records (one small read per identity instead of one per image).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sphereface2.data.decode import decode_image
from sphereface2.data.list_file import load_skipping_corrupt
from sphereface2.data.recordio import IRHeader, RecordIOError, RecordIOReader, unpack_record
from sphereface2.data.transforms import Transform, to_tensor

_SPOT_CHECKS = 8  # identities whose first image header is compared with the identity record


def locate_recordio(path: str | os.PathLike) -> tuple[str, str, str]:
    """``(rec, idx, property)`` paths for a folder holding ``train.rec`` or a ``.rec`` file."""
    path = str(path)
    if os.path.isdir(path):
        rec = os.path.join(path, "train.rec")
        if not os.path.isfile(rec):
            raise FileNotFoundError(f"{path}: folder has no train.rec")
    elif os.path.isfile(path):
        rec = path
    else:
        raise FileNotFoundError(f"RecordIO file or folder not found: {path}")
    return rec, str(Path(rec).with_suffix(".idx")), os.path.join(os.path.dirname(rec), "property")


def read_property(path: str | os.PathLike) -> tuple[int, int, int]:
    """Parse an InsightFace ``property`` file: ``num_classes,height,width``."""
    path = str(path)
    with open(path, encoding="utf-8") as f:
        text = f.read().strip()
    fields = text.split(",")
    try:
        values = tuple(int(v) for v in fields)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise ValueError(f"{path}: expected 'num_classes,height,width' (positive), got {text!r}")
    return values  # type: ignore[return-value]


@dataclass
class LabelCheck:
    """What :meth:`RecordIODataset.check_labels` found."""

    checked: int  # image records whose header was read
    labels: np.ndarray  # each image's header label; -1 where the header or label is bad
    problems: list[str] = field(default_factory=list)  # the first few messages
    problem_count: int = 0

    def add(self, message: str, show: int) -> None:
        self.problem_count += 1
        if len(self.problems) < show:
            self.problems.append(message)


def header_label(header: IRHeader, where: str) -> int:
    """A record's class label: the float label, or the first value of a label array."""
    value = header.label if isinstance(header.label, float) else header.label[0]
    if not float(value).is_integer() or value < 0:
        raise RecordIOError(f"{where}: label {value!r} is not a class index (integer >= 0)")
    return int(value)


class RecordIODataset(Dataset):
    """Images of a RecordIO training set: yields ``(transform(rgb), label)``.

    ``path`` is a folder holding ``train.rec``/``train.idx`` (and optionally ``property``)
    or the ``.rec`` path itself (``.idx`` next to it). Dataset index ``i`` is the ``i``-th
    image key in ascending key order. ``transform`` defaults to
    :func:`~sphereface2.data.transforms.to_tensor`. With ``skip_corrupt`` a record that
    fails to read or decode is replaced by the next good one and listed in
    :attr:`corrupt_samples` (per process).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        transform: Transform | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        self.rec_path, idx_path, property_path = locate_recordio(path)
        self.reader = RecordIOReader(self.rec_path, idx_path)
        self.transform = transform if transform is not None else to_tensor
        # RecordIO stores integer labels only; the attribute keeps every training set alike.
        self.class_names: list[str] | None = None
        self.skip_corrupt = skip_corrupt
        self._corrupt: dict[int, str] | None = {} if skip_corrupt else None
        self._labels: np.ndarray | None = None
        self._class_ranges: dict[int, tuple[int, int]] | None = None
        self.property_path = property_path if os.path.isfile(property_path) else None
        prop = read_property(self.property_path) if self.property_path else None
        self.image_size: tuple[int, int] | None = (prop[1], prop[2]) if prop else None
        if len(self.reader) == 0:
            raise RecordIOError(f"{idx_path}: index lists no records")

        self.meta: tuple[int, int] | None = self._read_meta()
        if self.meta is not None:
            id_start, id_end = self.meta
            self._keys = np.arange(1, id_start, dtype=np.int64)
            self._check_keys_present(range(1, id_end), "image and identity")
            self._num_classes: int | None = id_end - id_start
            if prop and prop[0] != self._num_classes:
                raise ValueError(
                    f"{self.property_path} says {prop[0]} classes but the meta record of "
                    f"{self.rec_path} says {self._num_classes} "
                    f"(identity keys {id_start}..{id_end - 1})"
                )
        else:
            self._keys = np.sort(self.reader.key_array)
            self._num_classes = prop[0] if prop else None
        if len(self._keys) == 0:
            raise RecordIOError(f"{self.rec_path}: holds no image records")

    # ----- layout -------------------------------------------------------------------------
    def _read_meta(self) -> tuple[int, int] | None:
        if 0 not in self.reader:
            return None
        header, image = unpack_record(self.reader.read(0), self.reader.describe(0))
        # A meta record is header-only; flag 2 with image bytes is an image with 2 labels.
        if header.flag != 2 or image:
            return None
        id_start, id_end = (int(v) for v in header.label)
        if not 1 <= id_start <= id_end:
            raise RecordIOError(
                f"{self.reader.describe(0)}: meta record labels [{id_start}, {id_end}] must "
                f"satisfy 1 <= id_start <= id_end"
            )
        return id_start, id_end

    def _check_keys_present(self, keys: range, what: str) -> None:
        missing = self.reader.missing(np.arange(keys.start, keys.stop))
        if len(missing):
            raise RecordIOError(
                f"{self.reader.idx_path}: {len(missing)} {what} key(s) announced by the meta "
                f"record are missing, first {missing[0]}"
            )

    @property
    def keys(self) -> np.ndarray:
        """Record key of each dataset index."""
        return self._keys

    @property
    def num_classes(self) -> int:
        if self._num_classes is None:
            self._num_classes = int(self.labels.max()) + 1
        return self._num_classes

    @property
    def labels(self) -> np.ndarray:
        """Label of every image (int64), read from record headers only, cached."""
        if self._labels is None:
            if self.meta is not None:
                self._labels = self._labels_from_identities()
            else:
                self._labels = self._labels_from_headers()
        return self._labels

    @property
    def class_ranges(self) -> dict[int, tuple[int, int]] | None:
        """Identity -> ``(first_key, end_key)`` of its images (MS1M layout), else ``None``."""
        if self.meta is None:
            return None
        if self._class_ranges is None:
            self._labels = self._labels_from_identities()
        return self._class_ranges

    def _labels_from_headers(self) -> np.ndarray:
        labels = np.empty(len(self._keys), dtype=np.int64)
        for i, key in enumerate(self._keys.tolist()):
            where = self.reader.describe(key)
            labels[i] = header_label(self.reader.read_header(key), where)
        if self._num_classes is not None and labels.max() >= self._num_classes:
            bad = int(np.argmax(labels))
            raise ValueError(
                f"{self.reader.describe(int(self._keys[bad]))}: label {labels[bad]} is out of "
                f"range for the {self._num_classes} classes of {self.property_path}"
            )
        return labels

    def check_labels(self, show: int = 20, log: Callable[[int], None] | None = None) -> LabelCheck:
        """Read the header (not the image) of every image record and check its label.

        Each label must be a class index; in the MS1M layout it must equal the identity
        record that owns the key, otherwise it must be below the ``property`` class count.
        Problems are collected, not raised (the first ``show`` messages are kept), so one
        pass reports them all. ``log(done)`` is called every 100,000 records.
        """
        expected = self._labels_from_identities(spot_check=False) if self.meta else None
        id_start = self.meta[0] if self.meta else 0
        labels = np.full(len(self._keys), -1, dtype=np.int64)
        check = LabelCheck(checked=len(self._keys), labels=labels)
        for i, key in enumerate(self._keys.tolist()):
            if log is not None and i and i % 100_000 == 0:
                log(i)
            where = self.reader.describe(key)
            try:
                label = header_label(self.reader.read_header(key), where)
            except (RecordIOError, ValueError) as err:
                check.add(str(err), show)
                continue
            if expected is not None and label != expected[i]:
                check.add(
                    f"{where}: header label {label} disagrees with identity record "
                    f"{id_start + expected[i]} (identity {expected[i]})",
                    show,
                )
            elif expected is None and self._num_classes is not None and label >= self._num_classes:
                check.add(
                    f"{where}: label {label} is out of range for the {self._num_classes} "
                    f"classes of {self.property_path}",
                    show,
                )
            else:
                labels[i] = label
        return check

    def _labels_from_identities(self, spot_check: bool = True) -> np.ndarray:
        assert self.meta is not None
        id_start, id_end = self.meta
        labels = np.full(id_start - 1, -1, dtype=np.int64)
        ranges: dict[int, tuple[int, int]] = {}
        for label, key in enumerate(range(id_start, id_end)):
            where = self.reader.describe(key)
            header = self.reader.read_header(key)
            if header.flag < 2:
                raise RecordIOError(f"{where}: identity record needs labels [first, end]")
            first, end = int(header.label[0]), int(header.label[1])
            if not 1 <= first <= end <= id_start:
                raise RecordIOError(
                    f"{where}: identity {label} range [{first}, {end}) is outside the image "
                    f"keys 1..{id_start - 1}"
                )
            if (labels[first - 1 : end - 1] >= 0).any():
                raise RecordIOError(f"{where}: identity {label} overlaps another identity")
            labels[first - 1 : end - 1] = label
            ranges[label] = (first, end)
        if (labels < 0).any():
            key = int(np.argmax(labels < 0)) + 1
            raise RecordIOError(
                f"{self.rec_path}: {(labels < 0).sum()} image(s) belong to no identity record, "
                f"first key {key}"
            )
        if spot_check:
            self._spot_check(ranges)
        self._class_ranges = ranges
        return labels

    def _spot_check(self, ranges: dict[int, tuple[int, int]]) -> None:
        # Identity records and image headers must agree; check a few instead of all images.
        filled = [c for c, (first, end) in ranges.items() if end > first]
        for c in filled[:: max(1, len(filled) // _SPOT_CHECKS)]:
            key = ranges[c][0]
            stored = header_label(self.reader.read_header(key), self.reader.describe(key))
            if stored != c:
                raise RecordIOError(
                    f"{self.reader.describe(key)}: header label {stored} disagrees with identity "
                    f"record {self.meta[0] + c} (identity {c})"  # type: ignore[index]
                )

    # ----- samples ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._keys)

    def _load(self, index: int) -> tuple[np.ndarray, int]:
        key = int(self._keys[index])
        where = self.reader.describe(key)
        header, image = unpack_record(self.reader.read(key), where)
        label = header_label(header, where)
        if self._num_classes is not None and label >= self._num_classes:
            raise RecordIOError(
                f"{where}: label {label} is out of range for {self._num_classes} classes"
            )
        return decode_image(image, source=where), label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        rgb, label = load_skipping_corrupt(
            index,
            len(self),
            self._load,
            lambda i: self.reader.describe(int(self._keys[i])),
            self._corrupt,
        )
        return self.transform(rgb), label

    @property
    def corrupt_samples(self) -> list[str]:
        """``"file record KEY: error"`` for each record skipped so far in this process."""
        if not self._corrupt:
            return []
        return [msg for _, msg in sorted(self._corrupt.items())]

    def close(self) -> None:
        self.reader.close()

    def __repr__(self) -> str:
        layout = "ms1m" if self.meta is not None else "plain"
        return f"RecordIODataset({self.rec_path!r}, images={len(self)}, layout={layout})"
