"""A run with data.label_noise.p > 0 says so: label_noise.json (the record the label-audit
tool reads), a log line and summary.json's ``label_noise`` (p, seed, corrupted, changed)."""

from __future__ import annotations

import json

import numpy as np

from sphereface2.data.recordio_dataset import RecordIODataset
from sphereface2.train.run_folder import RunFolder
from sphereface2.train.trainer import train


def _reference_noise(labels: np.ndarray, p: float, num_classes: int, seed: int):
    """The label_noise module's documented draw, written out: one uniform per sample
    selects it, one integer per sample (drawn for all) is the candidate label."""
    rng = np.random.Generator(np.random.PCG64(seed))
    selected = rng.random(labels.size) < p
    candidates = rng.integers(0, num_classes, size=labels.size, dtype=np.int64)
    return np.where(selected, candidates, labels), np.flatnonzero(selected)


def test_noisy_run_records_its_noise(tmp_path, tiny_data, tiny_config):
    run = tmp_path / "run"
    train(tiny_config(data={"label_noise": {"p": 0.5, "seed": 3}}), run, echo=False)
    assert RunFolder(run).label_noise == run / "label_noise.json"

    clean = RecordIODataset(tiny_data).labels
    noisy, corrupted = _reference_noise(clean, 0.5, 4, 3)
    changed = np.flatnonzero(noisy != clean)
    assert 0 < changed.size < corrupted.size < 24  # the seed exercises every case
    record = json.loads((run / "label_noise.json").read_text())
    assert record == {
        "p": 0.5,
        "num_classes": 4,
        "seed": 3,
        "num_samples": 24,
        "corrupted_indices": corrupted.tolist(),
        "clean_labels": clean[corrupted].tolist(),
        "noisy_labels": noisy[corrupted].tolist(),
        "changed_indices": changed.tolist(),
    }

    summary = json.loads((run / "summary.json").read_text())
    assert summary["label_noise"] == {
        "p": 0.5,
        "seed": 3,
        "num_samples": 24,
        "corrupted": corrupted.size,
        "changed": changed.size,
        "file": str(run / "label_noise.json"),
    }
    assert summary["files"]["label_noise"] == str(run / "label_noise.json")
    log = (run / "log.txt").read_text()
    assert (
        f"label noise: p 0.5, seed 3: {corrupted.size} of 24 labels corrupted (redrawn "
        f"uniformly), {changed.size} changed; record {run / 'label_noise.json'}"
    ) in log
    assert not list(run.glob(".label_noise*"))  # no temporary file left


def test_clean_run_has_no_noise_record(tmp_path, tiny_config):
    run = tmp_path / "run"
    train(tiny_config(), run, stop_after=2, echo=False)
    assert not (run / "label_noise.json").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["label_noise"] is None
    assert "label noise" not in (run / "log.txt").read_text()
