"""Multi-process checkpoint files, written by hand as W ranks would write them."""

from __future__ import annotations

import pytest
import torch

from sphereface2.distributed.sharding import class_shard
from sphereface2.train.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from sphereface2.train.sharded_checkpoint import (
    list_shard_files,
    load_rows,
    shard_file_name,
    shard_payload,
    split_optimizer_state,
)

K, D, WEIGHT_ID = 7, 3, 1


def _full_state() -> tuple[dict, dict]:
    """A plain head (weight, bias) and an SGD state for params [backbone.w, weight, bias]."""
    weight = torch.arange(K * D, dtype=torch.float32).reshape(K, D)
    head = {"weight": weight, "bias": torch.tensor(-4.0)}
    optimizer = {
        "state": {
            0: {"momentum_buffer": torch.ones(2)},
            WEIGHT_ID: {"momentum_buffer": -weight},
            2: {"momentum_buffer": torch.tensor(0.5)},
        },
        "param_groups": [{"lr": 0.1, "params": [0, 1, 2]}],
    }
    return head, optimizer


def _write(folder, iteration: int, world: int) -> None:
    """Checkpoint ``iteration`` as ``world`` ranks write it (shards, then the main file)."""
    head, optimizer = _full_state()
    for rank in range(world):
        start, end = class_shard(K, rank, world)
        _, rows = split_optimizer_state(
            {**optimizer, "state": {WEIGHT_ID: {"momentum_buffer": -head["weight"][start:end]}}},
            {"weight": WEIGHT_ID},
        )
        payload = shard_payload(
            iteration, rank, world, (start, end), {"weight": head["weight"][start:end]}, rows, {}
        )
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(payload, folder / shard_file_name(iteration, rank, world))
    rest, _ = split_optimizer_state(optimizer, {"weight": WEIGHT_ID})
    main = {
        "head": {"bias": head["bias"]},
        "optimizer": rest,
        "rng": {},
        "sharding": {"world_size": world, "num_classes": K, "keys": {"weight": WEIGHT_ID}},
    }
    save_checkpoint(main, folder, iteration)


@pytest.mark.parametrize("saved_world", [1, 2, 3])
@pytest.mark.parametrize("new_world", [1, 2, 4])
def test_rows_for_any_new_world(tmp_path, saved_world, new_world):
    if saved_world == 1:
        head, optimizer = _full_state()
        record = {"world_size": 1, "num_classes": K, "keys": {"weight": WEIGHT_ID}}
        save_checkpoint(
            {"head": head, "optimizer": optimizer, "rng": {}, "sharding": record}, tmp_path, 5
        )
    else:
        _write(tmp_path, 5, saved_world)
    main_path = list_checkpoints(tmp_path)[-1][1]
    main = load_checkpoint(main_path, merge_shards=False)
    full_head, _ = _full_state()
    for rank in range(new_world):
        start, end = class_shard(K, rank, new_world)
        rows = load_rows(main_path, main, start, end)
        assert torch.equal(rows["head"]["weight"], full_head["weight"][start:end])
        assert torch.equal(rows["head"]["bias"], full_head["bias"])
        state = rows["optimizer"]["state"]
        assert torch.equal(state[WEIGHT_ID]["momentum_buffer"], -full_head["weight"][start:end])
        assert torch.equal(state[0]["momentum_buffer"], torch.ones(2))
    merged = load_checkpoint(main_path)  # evaluation view: the full head
    assert torch.equal(merged["head"]["weight"], full_head["weight"])


def test_a_missing_shard_file_is_named(tmp_path):
    _write(tmp_path, 4, 2)
    (tmp_path / shard_file_name(4, 1, 2)).unlink()
    with pytest.raises(FileNotFoundError, match=r"rank00001-of-00002.pt: shard 1 of 2"):
        load_checkpoint(tmp_path / "ckpt_00000004.pt")


def test_a_shard_of_another_checkpoint_is_refused(tmp_path):
    _write(tmp_path, 4, 2)
    _write(tmp_path / "other", 9, 2)
    (tmp_path / "other" / shard_file_name(9, 0, 2)).rename(tmp_path / shard_file_name(4, 0, 2))
    with pytest.raises(ValueError, match="expected shard 0 of 2 of iteration 4"):
        load_checkpoint(tmp_path / "ckpt_00000004.pt")


def test_pruning_removes_the_shards_of_deleted_checkpoints(tmp_path):
    for iteration in (2, 4, 6):
        _write(tmp_path, iteration, 2)
    # shards of an unfinished checkpoint newer than the last main file must survive
    torch.save({}, tmp_path / shard_file_name(8, 0, 2))
    prune_checkpoints(tmp_path, keep_last=1)
    assert [it for it, _ in list_checkpoints(tmp_path)] == [6]
    assert sorted({it for it, _ in list_shard_files(tmp_path)}) == [6, 8]


def test_a_corrupt_shard_file_is_named(tmp_path):
    _write(tmp_path, 4, 2)
    (tmp_path / shard_file_name(4, 1, 2)).write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"rank00001-of-00002.pt: not a readable checkpoint shard"):
        load_checkpoint(tmp_path / "ckpt_00000004.pt")


def test_a_global_batch_the_processes_cannot_split_is_refused(tiny_config):
    from sphereface2.config import ConfigError
    from sphereface2.train.trainer import per_process_batch

    cfg = tiny_config(data={"batch_size": 8}, optim={"accumulation_steps": 2})
    assert per_process_batch(cfg, 2) == 2
    with pytest.raises(ConfigError, match=r"data.batch_size: 8 images .* 2 accumulation step"):
        per_process_batch(cfg, 3)
