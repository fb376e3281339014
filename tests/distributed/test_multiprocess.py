"""Sharded heads on 2 and 3 Gloo processes against the plain head on the global batch.

The processes are spawned once per world size (see conftest.py); each test reads what the
ranks measured. Every case uses 7 classes (not divisible by 2 or 3) unless it says
otherwise; "two-classes" on 3 ranks leaves the last shard empty.
"""

from __future__ import annotations

import math

import pytest
import torch
from distributed_workers import HEAD_CASES, HeadCase

from sphereface2.distributed import class_shard
from sphereface2.heads.sharded import init_proxy_rows

pytestmark = [pytest.mark.distributed, pytest.mark.slow]
WORLDS = [2, 3]


def _ok(result: dict, where: str) -> dict:
    assert "error" not in result, f"{where} failed:\n{result.get('error')}"
    return result


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("case", HEAD_CASES, ids=lambda c: c.id)
def test_sharded_head_equals_plain_head(world_results, world: int, case: HeadCase) -> None:
    ranks = world_results(world)
    shards = []
    for me, everything in enumerate(ranks):
        r = _ok(everything["heads"][case.id], f"rank {me}, {case.id}")
        shards.append(r["shard"])
        assert r["init"] == 0.0, "init='full' must give exactly the plain head's rows"
        for key in ("loss", "embeddings", "weight", "stats"):
            assert r[key] <= case.tol, f"rank {me}: {key} differs by {r[key]:.3g}"
        if "bias" in r:
            assert r["bias"] <= case.tol, f"rank {me}: bias gradient differs by {r['bias']:.3g}"
            assert r["bias_value"] == 0.0
        assert r["stat_keys"]
        # the comparison means something only if the gradients are not all ~0
        assert r["embedding_grad_scale"] > 1e-2 and r["weight_grad_scale"] > 1e-2
        assert math.isfinite(r["loss_value"]) and r["loss_value"] > 0
    assert shards[0][0] == 0 and shards[-1][1] == case.num_classes
    assert all(a[1] == b[0] for a, b in zip(shards, shards[1:]))
    if case.num_classes < world:
        assert shards[-1][0] == shards[-1][1], "expected an empty shard on the last rank"


@pytest.mark.parametrize("world", WORLDS)
def test_process_group_and_small_collectives(world_results, world: int) -> None:
    for me, everything in enumerate(world_results(world)):
        r = _ok(everything["collectives"], f"rank {me}")
        assert (r["rank"], r["world"], r["is_main"], r["backend"]) == (me, world, me == 0, "gloo")
        assert r["sizes"] == [1 + k for k in range(world)]
        assert r["labels"] == [v for k in range(world) for v in (10 * k, 10 * k + 1)]
        assert r["max"] == [world - 1.0, 0.0]
        assert r["scalars_mean"] == {"a": (world - 1) / 2, "b": 2.0}
        assert r["scalars_max"] == {"a": world - 1.0}


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("method", ["all_reduce", "reduce_scatter"])
def test_all_gather_backward_routes_summed_gradients_to_owners(
    world_results, world: int, method: str
) -> None:
    for me, everything in enumerate(world_results(world)):
        r = _ok(everything["collectives"], f"rank {me}")[f"routing_{method}"]
        assert r["gathered_rows"] == sum(2 + k for k in range(world))
        assert r["forward"] == 0.0
        assert r["backward"] < 1e-12


@pytest.mark.parametrize("world", WORLDS)
def test_replicated_gradient_is_summed_and_global_sum_backward_is_identity(
    world_results, world: int
) -> None:
    for me, everything in enumerate(world_results(world)):
        r = _ok(everything["collectives"], f"rank {me}")["replicate"]
        assert r["total"] == r["expected_total"]
        assert r["bias_grad"] == r["expected_bias_grad"]


@pytest.mark.parametrize("world", WORLDS)
def test_checkpoint_conversion_to_and_from_the_plain_head(world_results, world: int) -> None:
    for me, everything in enumerate(world_results(world)):
        r = _ok(everything["checkpoints"], f"rank {me}")
        for name in ("sphereface2", "softmax"):
            assert r[f"{name}_dst0_is_none_elsewhere"]
            assert r[f"{name}_all"] and r[f"{name}_loaded"] and r[f"{name}_round_trip"]
            assert (f"{name}_dst0" in r) == (me == 0)
            if me == 0:
                assert r[f"{name}_dst0"]
            on_last = r[f"{name}_weight_on_last"]
            assert on_last is (True if me == world - 1 else None)
        assert r["shard_init_deterministic"]


@pytest.mark.parametrize("world", WORLDS)
def test_per_shard_init_is_unit_and_differs_between_shards(world_results, world: int) -> None:
    rows = [_ok(e["checkpoints"], "ckpt")["shard_init_all_rows"] for e in world_results(world)]
    assert all(torch.equal(rows[0], other) for other in rows[1:])  # every rank gathered the same
    full = rows[0]
    assert full.shape == (7, 5)
    torch.testing.assert_close(full.norm(dim=1), torch.ones(7))
    assert not torch.allclose(full, init_proxy_rows(7, 5, 0, 7, mode="full", seed=11))
    firsts = [full[class_shard(7, r, world)[0]] for r in range(world)]
    assert all(not torch.allclose(firsts[0], other) for other in firsts[1:])


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("head", ["sphereface2", "arcface"])
def test_ddp_backbone_with_sum_hook_trains_like_one_process(
    world_results, world: int, head: str
) -> None:
    for me, everything in enumerate(world_results(world)):
        r = _ok(everything[f"ddp_{head}"], f"rank {me}")
        assert max(r["loss"]) < 1e-12
        assert max(r["backbone_grad"]) < 1e-12
        assert r["backbone_grad_ratio"] == pytest.approx([1.0, 1.0], abs=1e-12)
        assert r["weight_after_steps"] < 1e-12
        assert max(r["norm"]) < 1e-12 and max(r["inf_norm"]) < 1e-12


@pytest.mark.parametrize("world", WORLDS)
def test_ddp_default_averaging_would_shrink_the_backbone_gradient(world_results, world) -> None:
    for me, everything in enumerate(world_results(world)):
        r = _ok(everything["ddp_sphereface2_no_hook"], f"rank {me}")
        assert r["loss"][0] < 1e-12
        assert r["backbone_grad_ratio"][0] == pytest.approx(1.0 / world, abs=1e-12)


@pytest.mark.parametrize("world", WORLDS)
def test_a_bad_label_on_one_rank_raises_the_same_error_everywhere(world_results, world) -> None:
    messages = [everything["bad_label"] for everything in world_results(world)]
    assert len(set(messages)) == 1
    sizes = ", ".join(["2"] * world)
    expected = (
        f"sharded sphereface2 (global batch of {world} ranks, sizes [{sizes}]): "
        f"label 9 at batch index {2 * world - 1} is outside [0, 7)"
    )
    assert messages[0] == expected
