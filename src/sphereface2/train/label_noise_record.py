"""What a run with synthetic label noise records: ``<run>/label_noise.json``, a log line
and a ``label_noise`` entry in ``summary.json``.

The JSON file is :meth:`~sphereface2.data.label_noise.NoisyLabelDataset.save_corrupted`'s
record (p, num_classes, seed, num_samples, corrupted_indices, clean_labels, noisy_labels,
changed_indices); the label-audit tool reads it to score how well a trained model finds
the relabelled samples. It is written whole or not at all (temporary file, then rename).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sphereface2.data.label_noise import NoisyLabelDataset


def label_noise_summary(dataset: Any, path: Path) -> dict[str, Any] | None:
    """The summary entry of a noisy training set (None when its labels are clean):
    p, seed, how many samples there are, were corrupted and changed, and the record file."""
    if not isinstance(dataset, NoisyLabelDataset):
        return None
    return {
        "p": dataset.p,
        "seed": dataset.seed,
        "num_samples": len(dataset),
        "corrupted": len(dataset.corrupted_indices),
        "changed": len(dataset.changed_indices),
        "file": str(path),
    }


def write_label_noise(dataset: NoisyLabelDataset, path: Path) -> None:
    """Save the noise record to ``path`` (a ``.json``) atomically."""
    temp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.json")
    try:
        dataset.save_corrupted(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def describe_label_noise(summary: dict[str, Any]) -> str:
    """One log line for :func:`label_noise_summary`'s entry."""
    return (
        f"label noise: p {summary['p']:g}, seed {summary['seed']}: {summary['corrupted']} of "
        f"{summary['num_samples']} labels corrupted (redrawn uniformly), "
        f"{summary['changed']} changed; record {summary['file']}"
    )
