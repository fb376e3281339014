"""A Partial FC head (sampled classes) resumes exactly: the draw counter is checkpointed."""

from __future__ import annotations

import torch

from sphereface2.train.checkpoint import list_checkpoints, load_checkpoint
from sphereface2.train.trainer import train


def _final(run_dir) -> dict:
    return load_checkpoint(list_checkpoints(run_dir)[-1][1])


def _sampled(tiny_config, sample_seed: int):
    # 4 classes, 2 images a batch: at most 2 positives, so ceil(0.75 * 4) = 3 classes
    # always include at least one drawn negative
    head = {"name": "cosface", "params": {"s": 8.0, "sample_rate": 0.75}}
    if sample_seed is not None:
        head["params"]["sample_seed"] = sample_seed
    return tiny_config(head=head, data={"batch_size": 2})


def test_stop_and_resume_matches_uninterrupted(tmp_path, tiny_config, assert_same_state):
    cfg = _sampled(tiny_config, None)
    straight = train(cfg, tmp_path / "straight", echo=False)
    assert straight.status == "completed" and straight.iteration == 8
    train(cfg, tmp_path / "resumed", stop_after=5, echo=False)
    resumed = train(cfg, tmp_path / "resumed", resume="auto", echo=False)
    assert resumed.iteration == 8
    final = _final(tmp_path / "straight")
    assert int(final["head"]["sample_draws"]) == 8  # one draw per step
    assert_same_state(final, _final(tmp_path / "resumed"))
    # the draws matter: another sampler seed trains to other weights
    train(_sampled(tiny_config, 12345), tmp_path / "other", echo=False)
    other = _final(tmp_path / "other")["head"]["weight"]
    assert not torch.equal(other, final["head"]["weight"])
