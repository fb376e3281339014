"""Partial FC on 2 and 3 Gloo processes: each shard samples its own classes, and the loss
and gradients equal the plain head's over the union of the shards' samples."""

from __future__ import annotations

import pytest
from partial_fc_workers import CASES

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_sharded_sampled_head_equals_plain_head_on_the_same_sample(world_results, world, case):
    ranks = world_results(world)
    unions = []
    for me, everything in enumerate(ranks):
        r = everything["partial_fc"][case]
        assert "error" not in r, f"rank {me}, {case} failed:\n{r.get('error')}"
        for key in ("loss", "stats", "embeddings", "weight", "bias"):
            if key in r:
                assert r[key] <= 1e-12, f"rank {me}: {key} differs by {r[key]:.3g}"
        assert r["weight_grad_scale"] > 1e-3
        assert r["outside_nonzero"] == 0, "an unsampled proxy got a gradient"
        assert r["positives_kept"]
        assert r["count"] == r["expected_count"]  # per shard: max(P_local, ceil(rate K_local))
        unions.append(r["union"])
    assert all(u == unions[0] for u in unions)
    name, classes, rate, _ = CASES[case]
    if classes > 2:
        assert len(unions[0]) < classes, "the sample should leave classes out"
