"""Exact resume: stop at k + resume to N gives the same weights as N straight (on CPU)."""

from __future__ import annotations

import pytest
import torch

from sphereface2.train.checkpoint import list_checkpoints, load_checkpoint
from sphereface2.train.trainer import ResumeError, train


def _final(run_dir) -> dict:
    return load_checkpoint(list_checkpoints(run_dir)[-1][1])


@pytest.mark.parametrize(
    "sections",
    [
        {},
        {"optim": {"accumulation_steps": 2, "max_grad_norm": 1.0, "nesterov": True}},
        {"model": {"options": {"width": 0.125, "dropout": 0.2}}},
        {"data": {"label_noise": {"p": 0.5, "seed": 1}}},
    ],
    ids=["plain", "accumulate-clip-nesterov", "dropout", "label-noise"],
)
def test_stop_and_resume_matches_uninterrupted(tmp_path, tiny_config, assert_same_state, sections):
    cfg = tiny_config(**sections)
    straight = train(cfg, tmp_path / "straight", echo=False)
    assert straight.status == "completed" and straight.iteration == 8
    # Stop at 4 (not a checkpoint_every multiple: stop_after writes its own checkpoint),
    # then resume twice: once to 7 (mid-epoch), once to the end.
    first = train(cfg, tmp_path / "resumed", stop_after=4, echo=False)
    assert first.status == "stopped" and first.iteration == 4
    assert first.model_path is None
    train(cfg, tmp_path / "resumed", resume="auto", stop_after=7, echo=False)
    resumed = train(cfg, tmp_path / "resumed", resume="auto", echo=False)
    assert resumed.iteration == 8 and resumed.status == "completed"
    assert_same_state(_final(tmp_path / "straight"), _final(tmp_path / "resumed"))
    assert resumed.final_loss == straight.final_loss


def test_resume_with_workers_matches_no_workers(tmp_path, tiny_config, assert_same_state):
    """DataLoader workers change nothing: per-sample seeds, not per-worker streams."""
    base = tiny_config()
    train(base, tmp_path / "w0", echo=False)
    workers = tiny_config(data={"num_workers": 2})
    train(workers, tmp_path / "w2", stop_after=5, echo=False)
    train(workers, tmp_path / "w2", resume="auto", echo=False)
    assert_same_state(_final(tmp_path / "w0"), _final(tmp_path / "w2"))


def test_resume_refuses_a_changed_recipe(tmp_path, tiny_config):
    train(tiny_config(), tmp_path / "run", stop_after=3, echo=False)
    changed = tiny_config(optim={"lr": 0.2}, model={"backbone": "sfnet10"})
    with pytest.raises(ResumeError) as info:
        train(changed, tmp_path / "run", resume="auto", echo=False)
    message = str(info.value)
    assert "model.backbone: 'sfnet4' -> 'sfnet10'" in message
    assert "optim.lr: 0.05 -> 0.2" in message
    # Logging/checkpointing settings may change; the run continues.
    relaxed = tiny_config(runtime={"log_every": 1, "checkpoint_every": 100, "keep_last": 0})
    result = train(relaxed, tmp_path / "run", resume="auto", echo=False)
    assert result.iteration == 8


def test_fresh_run_refuses_a_folder_with_checkpoints(tmp_path, tiny_config):
    train(tiny_config(), tmp_path / "run", stop_after=3, echo=False)
    with pytest.raises(ValueError, match="already has checkpoints; resume it with --resume auto"):
        train(tiny_config(), tmp_path / "run", echo=False)


def test_mismatched_checkpoint_weights_are_a_clear_error(tmp_path, tiny_config):
    first = train(tiny_config(), tmp_path / "run", stop_after=3, echo=False)
    ckpt = load_checkpoint(first.last_checkpoint)
    ckpt["backbone"]["fc.weight"] = torch.zeros(3, 3)
    torch.save(ckpt, first.last_checkpoint)
    with pytest.raises(ResumeError, match="its backbone weights do not fit"):
        train(tiny_config(), tmp_path / "run", resume=first.last_checkpoint, echo=False)
