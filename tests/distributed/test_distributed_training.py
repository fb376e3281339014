"""The trainer on 2 Gloo processes against the same config on one process.

``data.batch_size`` is the global batch: with 2 processes each rank reads every other
sample of the same epoch order, the backbone is data parallel (summed gradients) and the
head is sharded by class, so the weights after every step equal the single-process ones
up to float32 summation order (the tiny SFNet here has no BatchNorm, whose statistics are
per process by design). Also: multi-process checkpoints (shard files per rank) resume
bit-identically with the same number of processes and continue with another number.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from distributed_harness import run_world
from training_workers import train_rank

from sphereface2.config import config_from_dict
from sphereface2.data.packing import write_recordio
from sphereface2.train.checkpoint import list_checkpoints, load_checkpoint
from sphereface2.train.sharded_checkpoint import list_shard_files
from sphereface2.train.trainer import train

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

CLASSES, PER_CLASS, SIZE = 5, 8, 16  # 5 classes: shards of 3 and 2


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("dist_train_data")
    samples = []
    for label in range(CLASSES):
        base = rng.integers(0, 256, (SIZE, SIZE, 3)).astype(np.float32)
        for _ in range(PER_CLASS):
            noisy = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
            samples.append((noisy, label))
    write_recordio(root / "train", samples)
    return root


def _config(data_dir: Path, head: str, **optim) -> dict:
    return {
        "name": "dist",
        "seed": 11,
        "model": {
            "backbone": "sfnet4",
            "embedding_dim": 8,
            "input_size": [SIZE, SIZE],
            "options": {"width": 0.125},
        },
        "head": {"name": head},
        "data": {"train": str(data_dir), "batch_size": 8, "num_workers": 0},
        "optim": {"lr": 0.1, **optim},
        "schedule": {"iterations": 6, "milestones": [4]},
        "runtime": {
            "device": "cpu",
            "log_every": 1,
            "checkpoint_every": 3,
            "keep_last": 0,
            "average_last": 1,
        },
    }


def _one_process(raw: dict, out: Path, **kwargs) -> None:
    train(config_from_dict(raw, "test"), out, echo=False, **kwargs)


def _two_processes(raw: dict, out: Path, resume=None, stop_after=None) -> list[dict]:
    results = run_world(train_rank, 2, raw, str(out), resume, stop_after)
    assert [r["rank"] for r in results] == [0, 1]
    assert len({r["iteration"] for r in results}) == 1  # the ranks stopped together
    return results


def _weights(path: Path) -> dict[str, torch.Tensor]:
    data = load_checkpoint(path) if path.name.startswith("ckpt_") else torch.load(path)
    return {
        **{f"backbone.{k}": v for k, v in data["backbone"].items()},
        **{f"head.{k}": v for k, v in data["head"].items()},
    }


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if row["kind"] == "train"]


def _assert_close(a: dict, b: dict, rtol: float, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=atol, msg=key)


def _assert_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


CASES = {
    # SphereFace2 with gradient accumulation (DDP no_sync) and global-norm clipping
    "sphereface2": ("sphereface2", {"accumulation_steps": 2, "max_grad_norm": 0.5}),
    # a softmax-family head: the distributed softmax (max and sum all-reduces)
    "cosface": ("cosface", {}),
}


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory) -> dict:
    """Per case: the 1-process run and the 2-process run of the same config."""
    out = {}
    for case, (head, optim) in CASES.items():
        root = tmp_path_factory.mktemp(f"runs_{case}")
        raw = _config(data_dir, head, **optim)
        _one_process(raw, root / "one")
        _two_processes(raw, root / "two")
        out[case] = (raw, root)
    return out


@pytest.mark.parametrize("case", CASES)
def test_two_processes_train_the_same_model_as_one(runs, case):
    raw, root = runs[case]
    one, two = root / "one", root / "two"
    np.testing.assert_allclose(_losses(two), _losses(one), rtol=1e-5, atol=1e-6)
    assert len(_losses(one)) == 6
    for (it_one, path_one), (it_two, path_two) in zip(list_checkpoints(one), list_checkpoints(two)):
        assert it_one == it_two
        _assert_close(_weights(path_two), _weights(path_one), rtol=1e-4, atol=1e-5)
    _assert_close(_weights(two / "model.pt"), _weights(one / "model.pt"), rtol=1e-4, atol=1e-5)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["processes"] == 2
    assert "x 2 processes" in (two / "log.txt").read_text()


def test_multi_process_checkpoints_are_shard_files_committed_by_a_main_file(runs):
    _, root = runs["sphereface2"]
    checkpoints = root / "two" / "checkpoints"
    assert [it for it, _ in list_checkpoints(checkpoints)] == [3, 6]
    names = sorted(p.name for _, p in list_shard_files(checkpoints))
    assert names == [
        "ckpt_00000003.rank00000-of-00002.pt",
        "ckpt_00000003.rank00001-of-00002.pt",
        "ckpt_00000006.rank00000-of-00002.pt",
        "ckpt_00000006.rank00001-of-00002.pt",
    ]
    main = torch.load(checkpoints / "ckpt_00000006.pt", weights_only=True)
    assert set(main["head"]) == {"bias"}  # the proxies live in the shards only
    shard = torch.load(checkpoints / names[3], weights_only=True)
    assert shard["class_range"] == [3, 5] and shard["head"]["weight"].shape == (2, 8)


def test_two_process_resume_is_bit_identical(runs, tmp_path):
    raw, root = runs["sphereface2"]
    _two_processes(raw, tmp_path / "run", stop_after=2)
    results = _two_processes(raw, tmp_path / "run", resume="auto")
    assert {r["status"] for r in results} == {"completed"}
    resumed = list_checkpoints(tmp_path / "run")[-1][1]
    uninterrupted = list_checkpoints(root / "two")[-1][1]
    _assert_equal(_weights(resumed), _weights(uninterrupted))
    a = torch.load(resumed, weights_only=True)["optimizer"]["state"]
    b = torch.load(uninterrupted, weights_only=True)["optimizer"]["state"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key]["momentum_buffer"], b[key]["momentum_buffer"])


def test_a_two_process_checkpoint_continues_in_one_process(runs, tmp_path):
    raw, root = runs["sphereface2"]
    _two_processes(raw, tmp_path / "run", stop_after=3)
    _one_process(raw, tmp_path / "run", resume="auto")
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "resuming a 2-process checkpoint with 1 process(es)" in log
    continued = _weights(list_checkpoints(tmp_path / "run")[-1][1])
    _assert_close(continued, _weights(root / "one" / "model.pt"), rtol=1e-4, atol=1e-5)


def test_evaluation_reads_a_multi_process_run_without_its_head_shards(runs, tmp_path):
    from sphereface2.evaluate.model_loading import load_embedding_model

    _, root = runs["sphereface2"]
    checkpoints = root / "two" / "checkpoints"
    shards = sorted(checkpoints.glob("*.rank*"))
    for path in shards:  # evaluation needs the backbone only: it never opens the shards
        path.rename(tmp_path / path.name)
    try:
        two = load_embedding_model(root / "two", average_last=2)
    finally:
        for path in shards:
            (tmp_path / path.name).rename(path)
    one = load_embedding_model(root / "one", average_last=2)
    images = torch.rand(3, 3, SIZE, SIZE)
    np.testing.assert_allclose(two._forward(images), one._forward(images), rtol=1e-3, atol=1e-4)
