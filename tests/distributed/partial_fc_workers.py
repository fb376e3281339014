"""What each spawned rank runs for Partial FC: the sampled sharded head against the plain
head forced to use the union of the shards' samples, on the global batch."""

from __future__ import annotations

import math
import traceback
from typing import Any

import torch
import torch.distributed as dist

from sphereface2.distributed.process_group import DistributedContext
from sphereface2.heads import build_head
from sphereface2.heads.class_sampling import sample_size
from sphereface2.heads.sharded import build_sharded_head

DIM = 5
SEED = 13
BATCH = (3, 3, 3)  # per rank

# id: (head, num_classes, sample_rate, labels all in the first shard)
CASES = {
    "cosface": ("cosface", 40, 0.25, False),
    "softmax": ("softmax", 40, 0.25, False),
    "arcface-first-shard": ("arcface", 40, 0.25, True),
    "normface-two-classes": ("normface", 2, 0.5, False),  # 3 ranks: an empty shard
}


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return math.inf
    return 0.0 if a.numel() == 0 else float((a - b).abs().max())


def _case(name: str, classes: int, rate: float, first_shard: bool, world: int, me: int):
    params = {} if name == "softmax" else {"s": 4.0}
    torch.manual_seed(SEED)
    plain = build_head(name, classes, DIM, **params).double()
    sharded = build_sharded_head(name, classes, DIM, seed=SEED, sample_rate=rate, **params)
    sharded = sharded.double()
    start, end = sharded.class_start, sharded.class_end
    gen = torch.Generator().manual_seed(world)
    x = 1.7 * torch.randn(sum(BATCH[:world]), DIM, generator=gen, dtype=torch.float64)
    high = max(1, classes // world) if first_shard else classes
    y = torch.randint(0, high, (len(x),), generator=gen)
    offset, count = sum(BATCH[:me]), BATCH[me]

    xl = x[offset : offset + count].clone().requires_grad_()
    loss_s, stats_s = sharded(xl, y[offset : offset + count], return_stats=True)
    loss_s.backward()
    mine = sharded.last_sampled_classes
    shards: list[Any] = [None] * world
    dist.all_gather_object(shards, mine.tolist())
    union = torch.tensor(sorted(c for shard in shards for c in shard), dtype=torch.long)

    plain.draw_classes = lambda labels, n, start=0: union  # the same sample, forced
    plain.sample_rate = rate  # sample (the plain head was built exact: no draw counter)
    xp = x.clone().requires_grad_()
    loss_p, stats_p = plain(xp, y, return_stats=True)
    loss_p.backward()

    positives = sorted({int(v) for v in y if start <= v < end})
    outside = [i - start for i in range(start, end) if i not in set(mine.tolist())]
    out = {
        "loss": _diff(loss_p.detach(), loss_s.detach()),
        "stats": max(_diff(stats_p[k], stats_s[k]) for k in stats_p),
        "embeddings": _diff(xp.grad[offset : offset + count], xl.grad),
        "weight": _diff(plain.weight.grad[start:end], sharded.weight.grad),
        "weight_grad_scale": float(plain.weight.grad.abs().max()),
        "outside_nonzero": int(torch.count_nonzero(sharded.weight.grad[outside])),
        "positives_kept": set(positives) <= set(mine.tolist()),
        "count": len(mine),
        "expected_count": sample_size(end - start, len(positives), rate),
        "union": union.tolist(),
        "shard": (start, end),
    }
    if name == "softmax":
        out["bias"] = _diff(plain.bias.grad[start:end], sharded.bias.grad)
    return out


def run_partial_fc(ctx: DistributedContext) -> dict[str, Any]:
    """Every :data:`CASES` entry on this rank; a failing case records its traceback."""
    results: dict[str, Any] = {}
    for key, case in CASES.items():
        try:
            results[key] = _case(*case, ctx.world_size, ctx.rank)
        except Exception:
            results[key] = {"error": traceback.format_exc()}
    return results
