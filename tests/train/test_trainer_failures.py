"""Failure behaviour: NaN loss, missing data, and what a run folder records."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import sphereface2.train.trainer as trainer_module
from sphereface2.registry import UnknownNameError
from sphereface2.train.checkpoint import list_checkpoints, load_checkpoint
from sphereface2.train.trainer import NonFiniteLossError, train


def _nan_after(head: nn.Module, after: int) -> nn.Module:
    """Make ``head``'s loss NaN from its ``after``-th call on (the head keeps its type,
    which the trainer relies on for sharded and replicated parameters)."""
    real_forward, calls = head.forward, [0]

    def forward(embeddings, labels, return_stats=False):
        calls[0] += 1
        out = real_forward(embeddings, labels, return_stats=return_stats)
        if calls[0] >= after:
            nan = torch.tensor(float("nan"))
            return (out[0] * nan, out[1]) if return_stats else out * nan
        return out

    head.forward = forward
    return head


def test_nan_loss_stops_naming_the_iteration_and_keeps_the_checkpoint(
    tmp_path, tiny_config, monkeypatch
):
    real_build_head = trainer_module.build_training_head
    monkeypatch.setattr(
        trainer_module, "build_training_head", lambda *a: _nan_after(real_build_head(*a), 5)
    )
    cfg = tiny_config(runtime={"checkpoint_every": 2})
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at iteration 5") as info:
        train(cfg, tmp_path / "run", echo=False)
    assert "ckpt_00000004.pt" in str(info.value)
    assert [it for it, _ in list_checkpoints(tmp_path / "run")] == [2, 4]
    good = load_checkpoint(list_checkpoints(tmp_path / "run")[-1][1])
    assert all(torch.isfinite(t).all() for t in good["backbone"].values())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["iteration"] == 4
    assert "iteration 5" in (tmp_path / "run" / "log.txt").read_text()


def test_missing_training_data_is_named(tmp_path, tiny_config):
    cfg = tiny_config(data={"train": str(tmp_path / "no_such_set")})
    with pytest.raises(FileNotFoundError, match="no_such_set"):
        train(cfg, tmp_path / "run", echo=False)


def test_missing_validation_file_is_named(tmp_path, tiny_config):
    cfg = tiny_config(data={"val": [{"name": "lfw", "path": str(tmp_path / "lfw.bin")}]})
    with pytest.raises(FileNotFoundError, match=r"validation set 'lfw': .*lfw.bin"):
        train(cfg, tmp_path / "run", echo=False)


def test_unknown_backbone_in_code_built_config_lists_names(tmp_path, tiny_config):
    cfg = tiny_config()
    cfg.model.backbone = "resnet9000"  # bypasses load-time validation
    with pytest.raises(UnknownNameError, match="valid names: .*sfnet20"):
        train(cfg, tmp_path / "run", echo=False)


def test_missing_resume_checkpoint_is_named(tmp_path, tiny_config):
    with pytest.raises(FileNotFoundError, match="nope.pt: checkpoint file not found"):
        train(tiny_config(), tmp_path / "run", resume=tmp_path / "nope.pt", echo=False)


def test_fp16_on_cpu_is_refused(tmp_path, tiny_config):
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        train(tiny_config(runtime={"amp": "fp16"}), tmp_path / "run", echo=False)


def test_cuda_without_gpu_is_refused(tmp_path, tiny_config):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        train(tiny_config(), tmp_path / "run", device="cuda", echo=False)
