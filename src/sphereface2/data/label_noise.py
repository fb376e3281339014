"""Synthetic label noise for the noisy-label experiments.

Each training sample is selected for relabelling with probability ``p`` and, if
selected, gets a label drawn uniformly from all ``K`` classes, its own included. So a
selected sample keeps its label by chance with probability ``1/K``; the expected fraction
of labels that actually change is ``p * (1 - 1/K)``.

Vocabulary: *corrupted* samples are the ones selected for relabelling (``p`` of the set,
whether or not the draw changed their label); *changed* samples are the corrupted ones
whose label differs from the clean one. Both are exposed.

The noise is drawn once, for the whole set, from ``numpy.random.Generator(PCG64(seed))``:
one uniform number per sample decides selection, one integer per sample (drawn for every
sample, selected or not) is the candidate label. The result depends only on the seed,
``p``, ``K`` and the number of samples, never on the order in which samples are read;
for a fixed seed the samples corrupted at a smaller ``p`` are a subset of those
corrupted at a larger ``p``.
"""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset


def _check_args(p: float, num_classes: int, seed: int) -> None:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"noise probability p must be a number in [0, 1], got {p!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise ValueError(f"num_classes must be an integer, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")


def _check_labels(labels: Any, num_classes: int) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integers (class indices), got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    bad = np.flatnonzero((array < 0) | (array >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"label {int(array[i])} of sample {i} is outside [0, {num_classes}) "
            f"({bad.size} sample(s) out of range)"
        )
    return array


def inject_label_noise(
    labels: Any, p: float, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Relabel each sample with probability ``p`` to a uniform label in ``[0, num_classes)``.

    Returns ``(noisy_labels, corrupted_indices)``: int64 labels of the same length, and
    the sorted indices of the samples selected for relabelling (including those whose
    new label happens to equal the old one; ``np.flatnonzero(noisy != clean)`` gives the
    ones that changed). See the module docstring for the sampling scheme.
    """
    _check_args(p, num_classes, seed)
    clean = _check_labels(labels, num_classes)
    rng = np.random.Generator(np.random.PCG64(seed))
    selected = rng.random(clean.size) < p
    candidates = rng.integers(0, num_classes, size=clean.size, dtype=np.int64)
    noisy = np.where(selected, candidates, clean)
    return noisy, np.flatnonzero(selected)


class NoisyLabelDataset(Dataset):
    """Wrap a ``(image, label)`` dataset so that it yields ``(image, noisy_label)``.

    The clean labels come from ``labels`` or, by default, from ``dataset.labels`` (every
    reader in this package has it, so no image is decoded to build the noise);
    ``num_classes=None`` takes ``dataset.num_classes``. Each item's clean label is checked
    against the wrapped dataset's label as it is read.
    """

    def __init__(
        self,
        dataset: Any,
        p: float,
        num_classes: int | None,
        seed: int,
        labels: Any | None = None,
    ) -> None:
        if labels is None:
            labels = getattr(dataset, "labels", None)
            if labels is None:
                raise ValueError(
                    f"{type(dataset).__name__} has no 'labels' attribute; pass labels= explicitly"
                )
        if num_classes is None:
            num_classes = getattr(dataset, "num_classes", None)
            if num_classes is None:
                raise ValueError(
                    f"{type(dataset).__name__} has no 'num_classes'; pass num_classes explicitly"
                )
        self.dataset = dataset
        # Noise changes labels, not what they mean: the clean set's names still apply.
        self.class_names: list[str] | None = getattr(dataset, "class_names", None)
        self.p = float(p)
        self.num_classes = int(num_classes)
        self.seed = int(seed)
        self.clean_labels = _check_labels(labels, self.num_classes)
        if len(self.clean_labels) != len(dataset):
            raise ValueError(
                f"{len(self.clean_labels)} labels for a dataset of {len(dataset)} samples"
            )
        self.labels, self.corrupted_indices = inject_label_noise(
            self.clean_labels, p, self.num_classes, seed
        )

    @property
    def changed_indices(self) -> np.ndarray:
        """Indices whose noisy label differs from the clean one (a subset of the corrupted)."""
        return np.flatnonzero(self.labels != self.clean_labels)

    def __len__(self) -> int:
        return len(self.clean_labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.dataset[index]
        if int(label) != self.clean_labels[index]:
            raise ValueError(
                f"{type(self.dataset).__name__}[{index}] has label {int(label)} but the label "
                f"array says {int(self.clean_labels[index])}; the labels do not match the dataset"
            )
        return image, int(self.labels[index])

    def save_corrupted(self, path: str | os.PathLike) -> None:
        """Save the noise for analysis: ``.npy`` holds the corrupted indices (int64);
        ``.json`` holds the settings, corrupted and changed indices, and their clean and
        noisy labels."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".npy":
            np.save(path, self.corrupted_indices)
        elif suffix == ".json":
            idx = self.corrupted_indices
            record = {
                "p": self.p,
                "num_classes": self.num_classes,
                "seed": self.seed,
                "num_samples": len(self),
                "corrupted_indices": idx.tolist(),
                "clean_labels": self.clean_labels[idx].tolist(),
                "noisy_labels": self.labels[idx].tolist(),
                "changed_indices": self.changed_indices.tolist(),
            }
            path.write_text(json.dumps(record), encoding="utf-8")
        else:
            raise ValueError(f"{path}: use a .npy or .json file name to save corrupted indices")

    def __repr__(self) -> str:
        return (
            f"NoisyLabelDataset(p={self.p}, num_classes={self.num_classes}, seed={self.seed}, "
            f"corrupted={len(self.corrupted_indices)}/{len(self)})"
        )


def load_corrupted_indices(path: str | os.PathLike) -> np.ndarray:
    """Read the indices written by :meth:`NoisyLabelDataset.save_corrupted`."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False).astype(np.int64)
    if path.suffix.lower() == ".json":
        record = json.loads(path.read_text(encoding="utf-8"))
        if "corrupted_indices" not in record:
            raise ValueError(f"{path}: no 'corrupted_indices' key")
        return np.asarray(record["corrupted_indices"], dtype=np.int64)
    raise ValueError(f"{path}: expected a .npy or .json file")
