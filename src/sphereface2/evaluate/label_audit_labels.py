"""The labels a run trained with: its data's labels, plus the label noise it injected.

A run with ``data.label_noise.p > 0`` trained on relabelled samples. The record of that
noise is ``<run>/label_noise.json`` (written by
:meth:`~sphereface2.data.label_noise.NoisyLabelDataset.save_corrupted`: the settings, the
corrupted indices with their clean and noisy labels, and the changed indices). When the
file is missing the noise is drawn again with
:func:`~sphereface2.data.label_noise.inject_label_noise` from the config's seed and ``p``
and the data's class count, exactly as the trainer drew it (the draw depends on nothing
else).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sphereface2.config import LabelNoiseConfig
from sphereface2.data.label_noise import inject_label_noise

#: Name of the noise record inside a run folder.
NOISE_FILE = "label_noise.json"
_NOISE_KEYS = ("p", "num_classes", "seed", "num_samples", "corrupted_indices", "noisy_labels")


@dataclass(frozen=True)
class TrainedLabels:
    """Per-sample labels of the audited data.

    Attributes:
        labels: (N,) int64, the labels the run trained with (noisy where it injected noise).
        data_labels: (N,) int64, the labels stored in the data.
        changed: (N,) bool, True where the run's label differs from the data's; None when
            unknown (the data is not the run's training set and no noise record covers it).
        source: one sentence saying where ``labels`` came from.
        noise: the noise settings and counts (p, seed, num_classes, corrupted, changed), or
            None when the run injected none.
    """

    labels: np.ndarray
    data_labels: np.ndarray
    changed: np.ndarray | None
    source: str
    noise: dict[str, Any] | None = field(default=None)


def _int_array(record: dict[str, Any], key: str, path: Path) -> np.ndarray:
    values = record.get(key)
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(f"{path}: {key!r} must be a list of integers")
    return np.asarray(values, dtype=np.int64)


def read_noise_record(path: str | Path, data_labels: np.ndarray) -> TrainedLabels:
    """Apply the noise recorded in ``path`` to ``data_labels`` (the clean labels).

    Raises:
        ValueError: the file is not a noise record, or it does not describe this data (its
            sample count or its clean labels differ); the message names the file.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable label-noise record ({err})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object")
    missing = [key for key in _NOISE_KEYS if key not in record]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    count = len(data_labels)
    if record["num_samples"] != count:
        raise ValueError(
            f"{path}: records noise for {record['num_samples']} samples but the audited data "
            f"has {count}; audit the data the run trained on"
        )
    num_classes = int(record["num_classes"])
    indices = _int_array(record, "corrupted_indices", path)
    noisy = _int_array(record, "noisy_labels", path)
    if noisy.shape != indices.shape:
        raise ValueError(f"{path}: {len(indices)} corrupted_indices but {len(noisy)} noisy_labels")
    if indices.size and (indices.min() < 0 or indices.max() >= count):
        raise ValueError(f"{path}: corrupted_indices outside [0, {count})")
    if noisy.size and (noisy.min() < 0 or noisy.max() >= num_classes):
        raise ValueError(f"{path}: noisy_labels outside [0, {num_classes})")
    if "clean_labels" in record:
        clean = _int_array(record, "clean_labels", path)
        if clean.shape != indices.shape:
            raise ValueError(
                f"{path}: {len(indices)} corrupted_indices but {len(clean)} clean_labels"
            )
        differ = np.flatnonzero(clean != data_labels[indices])
        if differ.size:
            i = int(indices[differ[0]])
            raise ValueError(
                f"{path}: sample {i}'s clean label is {int(clean[differ[0]])} in the record but "
                f"{int(data_labels[i])} in the audited data; this is not the data the run "
                "trained on"
            )
    labels = data_labels.copy()
    labels[indices] = noisy
    changed = labels != data_labels
    if "changed_indices" in record:
        listed = _int_array(record, "changed_indices", path)
        if not np.array_equal(np.sort(listed), np.flatnonzero(changed)):
            raise ValueError(f"{path}: changed_indices disagree with the clean and noisy labels")
    noise = {
        "p": float(record["p"]),
        "seed": int(record["seed"]),
        "num_classes": num_classes,
        "corrupted": int(indices.size),
        "changed": int(changed.sum()),
    }
    return TrainedLabels(labels, data_labels, changed, f"read from {path}", noise)


def trained_labels(
    data_labels: np.ndarray,
    data_num_classes: int | None,
    noise_cfg: LabelNoiseConfig,
    run_dir: Path | None,
    is_training_set: bool,
) -> TrainedLabels:
    """The labels the run trained with, for data whose stored labels are ``data_labels``.

    Args:
        data_labels: (N,) the audited data's own labels.
        data_num_classes: the data's class count (the K the trainer drew noise over).
        noise_cfg: the run config's ``data.label_noise``.
        run_dir: the run folder (where ``label_noise.json`` lives), or None.
        is_training_set: whether the audited data is the run's ``data.train``; without
            noise, only then are its labels known to be unaltered.
    """
    data_labels = np.asarray(data_labels, dtype=np.int64)
    record = run_dir / NOISE_FILE if run_dir is not None else None
    if record is not None and record.is_file():
        found = read_noise_record(record, data_labels)
        if noise_cfg.p == 0:
            return found  # the record is the evidence; the config may have been edited
        if (found.noise or {}).get("p") != noise_cfg.p:
            note = f" (the config says p={noise_cfg.p}; the record wins)"
            return TrainedLabels(
                found.labels, found.data_labels, found.changed, found.source + note, found.noise
            )
        return found
    if noise_cfg.p > 0:
        if data_num_classes is None:
            raise ValueError(
                "the run injected label noise but the audited data does not say how many "
                "classes it has, so the noise cannot be drawn again"
            )
        labels, corrupted = inject_label_noise(
            data_labels, noise_cfg.p, data_num_classes, noise_cfg.seed
        )
        changed = labels != data_labels
        where = f"{run_dir} has no {NOISE_FILE}" if run_dir is not None else "no run folder"
        source = (
            f"re-derived with inject_label_noise(p={noise_cfg.p}, num_classes="
            f"{data_num_classes}, seed={noise_cfg.seed}) from the run config ({where})"
        )
        noise = {
            "p": float(noise_cfg.p),
            "seed": int(noise_cfg.seed),
            "num_classes": int(data_num_classes),
            "corrupted": int(corrupted.size),
            "changed": int(changed.sum()),
        }
        return TrainedLabels(labels, data_labels, changed, source, noise)
    changed = np.zeros(len(data_labels), dtype=bool) if is_training_set else None
    what = "the run's training set" if is_training_set else "not the run's training set"
    source = f"the data's own labels (the run injected no label noise; the data is {what})"
    return TrainedLabels(data_labels.copy(), data_labels, changed, source, None)
