"""Tiny models and data files for the evaluation, export and embed tests (CPU, milliseconds).

Shared by tests/evaluate/test_runner*.py, test_report*.py, tests/export and the CLI tests;
those outside this folder put it on ``sys.path`` themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sphereface2.backbones import build_backbone
from sphereface2.config import ModelConfig, config_from_dict, config_to_dict, save_config
from sphereface2.data.bin_format import write_bin
from sphereface2.data.decode import encode_jpeg
from sphereface2.data.recordio import IRHeader, RecordIOWriter, pack_record
from sphereface2.train.checkpoint import (
    FORMAT_VERSION,
    MODEL_FORMAT,
    atomic_save,
    save_checkpoint,
)

SIZE = 16
DIM = 16
WIDTH = 0.125


def model_config(**changes) -> ModelConfig:
    """The tiny backbone: SFNet-4 at 1/8 width, 16-d embeddings, 16x16 inputs."""
    values = {
        "backbone": "sfnet4",
        "embedding_dim": DIM,
        "input_size": (SIZE, SIZE),
        "options": {"width": WIDTH},
    }
    values.update(changes)
    return ModelConfig(**values)


def build_tiny(seed: int = 0, cfg: ModelConfig | None = None) -> torch.nn.Module:
    cfg = cfg or model_config()
    torch.manual_seed(seed)
    return build_backbone(
        cfg.backbone, embedding_dim=cfg.embedding_dim, input_size=cfg.input_size, **cfg.options
    ).eval()


def train_config_dict(cfg: ModelConfig | None = None) -> dict:
    """A complete, valid training config around the tiny model (as checkpoints store it)."""
    cfg = cfg or model_config()
    raw = {
        "name": "tiny",
        "model": {
            "backbone": cfg.backbone,
            "embedding_dim": cfg.embedding_dim,
            "input_size": list(cfg.input_size),
            "options": dict(cfg.options),
        },
        "head": {"name": "sphereface2"},
        "data": {"train": "unused", "batch_size": 4, "num_workers": 0},
        "schedule": {"iterations": 10},
    }
    return config_to_dict(config_from_dict(raw, "tiny test config"))


def write_run_folder(
    root: Path, iterations: tuple[int, ...] = (1, 2, 3), with_model_pt: bool = False
) -> dict[int, dict[str, torch.Tensor]]:
    """A run folder laid out like the trainer's: config.yaml and one checkpoint per
    iteration (different weights each), optionally model.pt = the last checkpoint's weights
    scaled by 2 (so a test can tell it apart). Returns the backbone weights per iteration."""
    config = train_config_dict()
    root.mkdir(parents=True, exist_ok=True)
    save_config(config_from_dict(config, "tiny"), root / "config.yaml")
    weights = {}
    for it in iterations:
        state = build_tiny(seed=100 + it).state_dict()
        weights[it] = state
        save_checkpoint({"config": config, "backbone": state, "head": {}}, root / "checkpoints", it)
    if with_model_pt:
        last = {k: v * 2 for k, v in weights[iterations[-1]].items()}
        payload = {
            "format": MODEL_FORMAT,
            "version": FORMAT_VERSION,
            "config": config,
            "iteration": iterations[-1],
            "averaged_iterations": [iterations[-1]],
            "backbone": last,
            "head": {},
        }
        atomic_save(payload, root / "model.pt")
        weights[-1] = last
    return weights


def face(rng: np.random.Generator, identity: int, size: int = SIZE) -> np.ndarray:
    """A left-right asymmetric RGB image whose colours and stripes depend on ``identity``."""
    base = np.zeros((size, size, 3), np.float32)
    base[..., identity % 3] = 150.0
    base[:, : size // 3, (identity + 1) % 3] += 60.0  # asymmetric: flipping changes it
    stripes = (np.arange(size) // (1 + identity % 3) % 2) * 70.0
    base += stripes[:, None, None] if identity % 2 else stripes[None, :, None]
    noisy = base + rng.normal(0.0, 25.0, base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def write_tiny_bin(path: Path, pairs: int = 20, seed: int = 0, identities: int = 5) -> np.ndarray:
    """A validation .bin with ``pairs`` pairs (alternating genuine / impostor)."""
    rng = np.random.default_rng(seed)
    images, issame = [], []
    for i in range(pairs):
        a = i % identities
        b = a if i % 2 == 0 else (a + 1 + i // identities) % identities
        if b == a and i % 2:
            b = (a + 1) % identities
        images += [encode_jpeg(face(rng, a)), encode_jpeg(face(rng, b))]
        issame.append(a == b)
    write_bin(path, images, issame)
    return np.array(issame)


def write_image_folder(root: Path, identities: int = 3, per_identity: int = 2, seed: int = 0):
    """``root/id<k>/<j>.png``; returns the sorted relative paths and labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(identities):
        (root / f"id{k}").mkdir(parents=True, exist_ok=True)
        for j in range(per_identity):
            Image.fromarray(face(rng, k)).save(root / f"id{k}" / f"{j}.png")
            rows.append((f"id{k}/{j}.png", k))
    return rows


def write_pair_list(path: Path, rows: list[tuple[int, str, str]]) -> Path:
    """An OpenSphere pair list of ``(label, path0, path1)`` rows."""
    path.write_text("".join(f"{label} {p0} {p1}\n" for label, p0, p1 in rows))
    return path


def write_tiny_rec(prefix: Path, labels: list[int], seed: int = 0) -> Path:
    """A plain RecordIO set ``prefix.rec``/``.idx`` with keys 10, 11, ... (not 0-based, so a
    test can tell keys from rows)."""
    rng = np.random.default_rng(seed)
    rec = prefix.with_suffix(".rec")
    with RecordIOWriter(rec, prefix.with_suffix(".idx")) as writer:
        for i, label in enumerate(labels):
            header = IRHeader(0, float(label), 10 + i, 0)
            writer.write(10 + i, pack_record(header, encode_jpeg(face(rng, label))))
    return rec
