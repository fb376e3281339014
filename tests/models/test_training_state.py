"""TrainingState: the checkpoint payload's schema, saved from and restored into live objects."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sphereface2.config import config_to_dict, load_config
from sphereface2.heads.sharded import build_sharded_head
from sphereface2.models.checkpoint import load_checkpoint, save_checkpoint
from sphereface2.models.training_state import (
    ResumeError,
    TrainingState,
    model_file_payload,
)

DEMO = Path(__file__).parents[2] / "configs" / "demo.yaml"


class Position:
    """A stand-in for the batch stream: an epoch and a sample position."""

    def __init__(self, epoch: int = 0, position: int = 0) -> None:
        self.epoch, self.position = epoch, position

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


def _state(seed: int, *, dataset_size: int = 40, num_classes: int = 5) -> TrainingState:
    torch.manual_seed(seed)
    backbone = torch.nn.Linear(6, 4)
    head = build_sharded_head("sphereface2", num_classes, 4, seed=seed)
    optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], 0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return TrainingState(
        load_config(DEMO),
        backbone,
        head,
        optimizer,
        scaler,
        Position(),
        dataset_size=dataset_size,
        num_classes=num_classes,
    )


def _train_a_step(state: TrainingState) -> None:
    x, y = torch.randn(8, 6), torch.randint(0, state.num_classes, (8,))
    state.head(state.backbone(x), y).backward()
    state.optimizer.step()


def test_a_saved_state_restores_weights_momentum_position_and_rng(tmp_path):
    saved = _state(0)
    _train_a_step(saved)
    saved.data.load_state_dict({"epoch": 2, "position": 16})
    main, shard = saved.state_dict(iteration=3)
    assert shard is None  # one process: everything is in the main file
    assert set(main) == {
        "config", "backbone", "head", "optimizer", "scaler", "rng", "data", "sharding"
    }  # fmt: skip
    assert main["config"] == config_to_dict(saved.config)
    assert main["data"] == {
        "epoch": 2, "position": 16, "world_size": 1, "dataset_size": 40, "num_classes": 5
    }  # fmt: skip
    assert main["sharding"] == {"world_size": 1, "num_classes": 5, "keys": {"weight": 2}}
    path = save_checkpoint(main, tmp_path, 3)
    expected_draw = torch.rand(3)  # the stream right after the capture

    fresh = _state(1)
    notes = fresh.load_state_dict(load_checkpoint(path, merge_shards=False), path)
    assert notes == []
    assert torch.equal(torch.rand(3), expected_draw)
    for a, b in ((saved.backbone, fresh.backbone), (saved.head, fresh.head)):
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), name
    momentum = [fresh.optimizer.state[p]["momentum_buffer"] for p in fresh.head.parameters()]
    expected = [saved.optimizer.state[p]["momentum_buffer"] for p in saved.head.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(momentum, expected))
    assert fresh.data.state_dict() == {"epoch": 2, "position": 16}


def test_a_checkpoint_of_other_data_or_another_head_is_refused(tmp_path):
    main, _ = _state(0).state_dict(iteration=1)
    path = save_checkpoint(main, tmp_path, 1)
    checkpoint = load_checkpoint(path, merge_shards=False)
    with pytest.raises(ResumeError, match=r"trained on 40 images of 5 classes but .* has 41"):
        _state(1, dataset_size=41).load_state_dict(checkpoint, path)
    other = _state(1)
    other.backbone = torch.nn.Linear(6, 3)
    with pytest.raises(ResumeError, match="its backbone weights do not fit the configured"):
        other.load_state_dict(checkpoint, path)


def test_a_position_several_processes_cannot_split_is_refused(tmp_path):
    state = _state(0)
    state.data.load_state_dict({"epoch": 0, "position": 3})
    main, _ = state.state_dict(iteration=1)
    path = save_checkpoint(main, tmp_path, 1)
    state.world_size = 2
    with pytest.raises(ResumeError, match="3 samples of epoch 0 were consumed, which 2 processes"):
        state._data_position(main["data"], path)


def test_the_model_file_payload_names_its_format_and_averaged_iterations():
    state = _state(0)
    weights = {"backbone": state.backbone.state_dict(), "head": state.head.state_dict()}
    payload = model_file_payload(state.config, 7, [5, 6, 7], 5, weights)
    assert payload["format"] == "sphereface2-model" and payload["version"] == 1
    assert payload["averaged_iterations"] == [5, 6, 7] and payload["iteration"] == 7
    assert payload["backbone"] is weights["backbone"] and payload["num_classes"] == 5
