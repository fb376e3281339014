"""Tiny run folders for the label-audit tests: a model.pt holding a tiny backbone and a head
whose proxies the test chooses, beside a tiny RecordIO training set (CPU, milliseconds).

Shared by tests/evaluate/test_label_audit*.py and tests/commands/test_data_audit_cli.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402

from sphereface2.config import config_from_dict, config_to_dict, save_config  # noqa: E402
from sphereface2.data.training_sets import open_training_set  # noqa: E402
from sphereface2.data.transforms import eval_transform  # noqa: E402
from sphereface2.heads import build_head  # noqa: E402
from sphereface2.train.checkpoint import FORMAT_VERSION, MODEL_FORMAT, atomic_save  # noqa: E402

BACKBONE_SEED = 1


def write_data(root: Path, labels: list[int]) -> Path:
    """A RecordIO set ``root/train.rec`` with one tiny face per label (keys 10, 11, ...)."""
    root.mkdir(parents=True, exist_ok=True)
    return tiny.write_tiny_rec(root / "train", labels)


def clean_embeddings(rec: Path, flip: bool = True) -> torch.Tensor:
    """Float32 embeddings of every sample with the run's backbone (as the audit embeds)."""
    dataset = open_training_set(rec, transform=eval_transform((tiny.SIZE, tiny.SIZE)))
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    model = tiny.build_tiny(seed=BACKBONE_SEED)
    with torch.no_grad():
        emb = model(images)
        return emb + model(images.flip(-1)) if flip else emb


def write_run(
    run: Path,
    rec: Path,
    num_classes: int,
    head: str = "sphereface2",
    params: dict | None = None,
    proxies: torch.Tensor | None = None,
    noise: dict | None = None,
    with_head: bool = True,
) -> dict:
    """``run/model.pt`` and ``run/config.yaml`` as the trainer writes them; the head's
    weight is ``proxies`` (default: its random init). Returns the stored head state."""
    raw = tiny.train_config_dict()
    raw["head"] = {"name": head, "params": dict(params or {})}
    raw["data"]["train"] = str(rec)
    if noise is not None:
        raw["data"]["label_noise"] = noise
    cfg = config_from_dict(raw, "label audit test config")
    torch.manual_seed(3)
    module = build_head(head, num_classes=num_classes, embedding_dim=tiny.DIM, **(params or {}))
    if proxies is not None:
        with torch.no_grad():
            module.weight.copy_(proxies)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    run.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run / "config.yaml")
    payload = {
        "format": MODEL_FORMAT,
        "version": FORMAT_VERSION,
        "config": config_to_dict(cfg),
        "iteration": 5,
        "averaged_iterations": [4, 5],
        "num_classes": num_classes,
        "backbone": tiny.build_tiny(seed=BACKBONE_SEED).state_dict(),
        "head": state if with_head else {},
    }
    atomic_save(payload, run / "model.pt")
    return state


def per_sample_classes_run(root: Path, count: int = 12, p: float = 0.5, seed: int = 4):
    """Every sample its own class, each proxy = that sample's own embedding, and label noise
    recorded in label_noise.json: a clean sample scores cosine 1 (the maximum) and a
    relabelled one scores its cosine to another sample (< 1), so the changed labels are
    exactly the lowest-ranked ones. Returns (run, rec, noisy dataset)."""
    from sphereface2.data.label_noise import NoisyLabelDataset

    rec = write_data(root / "data", list(range(count)))
    write_run(root / "run", rec, count, proxies=clean_embeddings(rec), noise={"p": p, "seed": seed})
    noisy = NoisyLabelDataset(open_training_set(rec), p, count, seed)
    noisy.save_corrupted(root / "run" / "label_noise.json")
    assert 0 < len(noisy.changed_indices) < count
    return root / "run", rec, noisy


def reference_cosines(emb: np.ndarray, weight: np.ndarray) -> list[list[float]]:
    """Float64 cosines by explicit loops over samples, classes and coordinates."""
    rows = []
    for x in emb.astype(np.float64).tolist():
        nx = sum(v * v for v in x) ** 0.5
        row = []
        for w in weight.astype(np.float64).tolist():
            nw = sum(v * v for v in w) ** 0.5
            row.append(sum(a * b for a, b in zip(x, w)) / (nx * nw))
        rows.append(row)
    return rows
