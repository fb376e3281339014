"""Launcher environment parsing and the single-process behaviour of the rank helpers."""

from __future__ import annotations

import pytest
import torch

from sphereface2.distributed import process_group as pg
from sphereface2.distributed.collectives import (
    all_gather_rows,
    all_gather_with_grad,
    all_reduce_max,
    all_reduce_scalars,
    gather_and_replicate,
    gather_sizes,
    global_sum,
)

TORCHRUN = {
    "RANK": "1",
    "WORLD_SIZE": "4",
    "LOCAL_RANK": "1",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500",
}


def test_no_launcher_means_a_single_process() -> None:
    env = pg.read_launch_env({})
    assert env == pg.LaunchEnv(0, 1, 0, None, None)
    assert not env.is_distributed


def test_torchrun_variables_are_parsed() -> None:
    env = pg.read_launch_env(TORCHRUN)
    assert env == pg.LaunchEnv(1, 4, 1, "127.0.0.1", 29500)
    assert env.is_distributed


def test_local_rank_defaults_to_rank_and_world_of_one_needs_no_master() -> None:
    assert pg.read_launch_env({"RANK": "0", "WORLD_SIZE": "1"}) == pg.LaunchEnv()
    env = dict(TORCHRUN)
    del env["LOCAL_RANK"]
    assert pg.read_launch_env(env).local_rank == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"RANK": None}, "WORLD_SIZE is set but RANK is not"),
        ({"WORLD_SIZE": None}, "RANK is set but WORLD_SIZE is not"),
        ({"RANK": "one"}, "RANK must be an integer, got 'one'"),
        ({"RANK": "4"}, "RANK must be >= 0 and <= 3, got 4"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE must be >= 1, got 0"),
        ({"LOCAL_RANK": "-2"}, "LOCAL_RANK must be >= 0, got -2"),
        ({"MASTER_ADDR": None}, "MASTER_ADDR is required with WORLD_SIZE=4"),
        ({"MASTER_PORT": " "}, "MASTER_PORT is required with WORLD_SIZE=4"),
        ({"MASTER_PORT": "70000"}, "MASTER_PORT must be >= 1 and <= 65535, got 70000"),
    ],
)
def test_bad_environment_names_the_variable(change: dict, message: str) -> None:
    env = dict(TORCHRUN)
    for key, value in change.items():
        if value is None:
            del env[key]
        else:
            env[key] = value
    with pytest.raises(ValueError, match=message):
        pg.read_launch_env(env)


def test_single_process_init_creates_no_group() -> None:
    with pg.distributed_session("cpu", environ={}) as ctx:
        assert ctx.backend is None and not ctx.initialized_here
        assert (ctx.rank, ctx.world_size, ctx.is_main) == (0, 1, True)
        assert ctx.device == torch.device("cpu")
        assert not pg.is_initialized()
    assert (pg.rank(), pg.world_size(), pg.is_main(), pg.backend_name()) == (0, 1, True, None)
    pg.barrier()  # no-ops without a process group
    pg.cleanup()


def test_default_backend() -> None:
    assert pg.default_backend("cpu") == "gloo"
    assert pg.default_backend(torch.device("cuda", 1)) == "nccl"


def test_collectives_are_identities_in_a_single_process() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    bias = torch.tensor(1.5, requires_grad=True)
    assert all_gather_with_grad(x) is x
    gathered, (b,) = gather_and_replicate(x, (bias,))
    assert gathered is x and b is bias
    assert all_gather_rows(x) is x
    assert gather_sizes(3) == [3]
    assert global_sum(x) is x
    assert torch.equal(all_reduce_max(x), x.detach())
    assert all_reduce_scalars({"loss": torch.tensor(2.0), "acc": 0.5}) == {"loss": 2.0, "acc": 0.5}


def test_collective_argument_errors() -> None:
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="method must be one of"):
        all_gather_with_grad(x, method="broadcast")
    with pytest.raises(ValueError, match="op must be one of"):
        all_reduce_scalars({"a": 1.0}, op="avg")
    with pytest.raises(ValueError, match=r"scalar 'a' has shape \(2, 3\), not a scalar"):
        all_reduce_scalars({"a": x})
