"""Tiny training data and configs for the trainer tests (all on the CPU, seconds each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sphereface2.config import TrainConfig, config_from_dict
from sphereface2.data.bin_format import write_bin
from sphereface2.data.decode import encode_jpeg
from sphereface2.data.packing import write_recordio

NUM_CLASSES = 4
PER_CLASS = 6
SIZE = 16


def _class_image(rng: np.random.Generator, label: int) -> np.ndarray:
    """A 16x16 image whose colour and stripe orientation tell the class apart."""
    base = np.zeros((SIZE, SIZE, 3), np.float32)
    base[..., label % 3] = 160.0
    stripes = (np.arange(SIZE) // 2 % 2) * 80.0
    base += stripes[:, None, None] if label < 2 else stripes[None, :, None]
    noisy = base + rng.normal(0.0, 20.0, base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def write_tiny_dataset(root: Path, seed: int = 0) -> Path:
    """A RecordIO training set (4 classes x 6 images of 16x16) and a 20-pair val .bin."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    samples = [(_class_image(rng, c), c) for c in range(NUM_CLASSES) for _ in range(PER_CLASS)]
    write_recordio(root / "train", samples)
    images, issame = [], []
    for pair in range(20):
        a = pair % NUM_CLASSES
        b = a if pair % 2 == 0 else (a + 1) % NUM_CLASSES
        images += [encode_jpeg(_class_image(rng, a)), encode_jpeg(_class_image(rng, b))]
        issame.append(a == b)
    write_bin(root / "val.bin", images, issame)
    return root


def tiny_config_dict(data_dir: Path, **sections: dict) -> dict:
    raw = {
        "name": "tiny",
        "seed": 7,
        "model": {
            "backbone": "sfnet4",
            "embedding_dim": 8,
            "input_size": [SIZE, SIZE],
            "options": {"width": 0.125},
        },
        "head": {"name": "sphereface2", "params": {"lw": 1.0}},
        "data": {"train": str(data_dir), "batch_size": 4, "num_workers": 0},
        "optim": {"lr": 0.05},
        "schedule": {"iterations": 8, "milestones": [6]},
        "runtime": {"device": "cpu", "log_every": 2, "checkpoint_every": 3, "keep_last": 0},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values} if isinstance(values, dict) else values
    return raw


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture
def tiny_config(tiny_data):
    """``tiny_config(**sections) -> TrainConfig``: section dicts update the defaults."""

    def make(**sections: dict) -> TrainConfig:
        return config_from_dict(tiny_config_dict(tiny_data, **sections), "tiny test config")

    return make


def _assert_same_training_state(a: dict, b: dict) -> None:
    """Weights, optimiser state and RNG/data position of two checkpoints are identical."""
    for part in ("backbone", "head"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"
    opt_a, opt_b = a["optimizer"], b["optimizer"]
    assert opt_a["param_groups"] == opt_b["param_groups"]
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for index, state in opt_a["state"].items():
        for key, value in state.items():
            other = opt_b["state"][index][key]
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, other), f"optimizer state {index}.{key} differs"
            else:
                assert value == other
    assert a["data"] == b["data"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


@pytest.fixture
def assert_same_state():
    """``assert_same_state(ckpt_a, ckpt_b)``: weights, optimiser, data and RNG identical."""
    return _assert_same_training_state
