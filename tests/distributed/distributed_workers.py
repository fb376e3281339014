"""What each spawned rank runs: sharded heads against the plain head on the global batch.

Every rank builds the same global batch and the same plain head (seeded), runs the plain
head on the whole batch and the sharded head on its own slice of it, and reports the
largest differences. The parent process turns those numbers into test verdicts, so one
spawn of N processes serves every case.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from partial_fc_workers import run_partial_fc

from sphereface2.distributed import (
    all_gather_rows,
    all_gather_with_grad,
    all_reduce_max,
    all_reduce_scalars,
    barrier,
    class_shard,
    clip_grad_norm_,
    gather_and_replicate,
    gather_sizes,
    global_grad_norm,
    global_sum,
    is_main,
    rank,
    sum_allreduce_hook,
    world_size,
)
from sphereface2.distributed.process_group import DistributedContext
from sphereface2.heads import build_head
from sphereface2.heads.sharded import build_sharded_head, init_proxy_rows

DIM = 5
SEED = 11
CLIP = 0.5  # below the gradient norms of run_ddp, so clipping really scales


@dataclass(frozen=True)
class HeadCase:
    """One comparison of a sharded head with the plain head on the global batch."""

    id: str
    name: str
    params: dict = field(default_factory=dict)
    dtype: torch.dtype = torch.float64
    num_classes: int = 7  # not divisible by 2 or 3
    batch_sizes: tuple[int, ...] = (3, 3, 3)  # per rank (the first `world` entries)
    labels: str = "random"  # or "first_shard": every label owned by rank 0
    forwards: int = 1  # forward passes summed before one backward
    tol: float = 1e-10
    autocast: bool = False  # run both heads under CPU bfloat16 autocast


def _has_fused_head() -> bool:
    """The fused SphereFace2 head registers itself when its module is imported."""
    try:
        import sphereface2.heads.fused_sphereface2  # noqa: F401
    except ImportError:
        return False
    return True


def _cases() -> list[HeadCase]:
    cases = []
    paper_m = {"C": 0.4, "A": 0.5, "M": 1.7}
    for margin_type, m in paper_m.items():
        for gradient in ("full", "detached"):
            params = {"margin_type": margin_type, "m": m, "r": 6.0, "gradient": gradient}
            cases.append(HeadCase(f"sphereface2-{margin_type}-{gradient}", "sphereface2", params))
    paper = HeadCase("sphereface2-C-paper-float32", "sphereface2", {}, torch.float32, tol=1e-5)
    cases.append(paper)
    cases.append(
        HeadCase(
            "sphereface2-A-float32-ragged",
            "sphereface2",
            {"margin_type": "A", "m": 0.5, "r": 6.0},
            torch.float32,
            batch_sizes=(4, 1, 2),
            tol=1e-5,
        )
    )
    cases.append(HeadCase("sphereface2-divisible", "sphereface2", {"r": 6.0}, num_classes=6))
    cases.append(
        HeadCase("sphereface2-no-positive", "sphereface2", {"r": 6.0}, labels="first_shard")
    )
    cases.append(HeadCase("sphereface2-ragged", "sphereface2", {"r": 6.0}, batch_sizes=(2, 5, 1)))
    cases.append(HeadCase("sphereface2-two-forwards", "sphereface2", {"r": 6.0}, forwards=2))
    cases.append(HeadCase("sphereface2-two-classes", "sphereface2", {"r": 6.0}, num_classes=2))
    for name in ("sphereface2", "arcface"):
        # bf16 rounds each rank's partial embedding gradient before the sum over ranks,
        # the plain head rounds the whole sum once: differences of a few bf16 ulps.
        case = HeadCase(f"{name}-bf16-autocast", name, {}, torch.float32, tol=1e-2, autocast=True)
        cases.append(case)
    if _has_fused_head():
        for margin_type, m in paper_m.items():
            params = {"margin_type": margin_type, "m": m, "r": 6.0, "chunk_size": 2}
            cases.append(HeadCase(f"sphereface2_fused-{margin_type}", "sphereface2_fused", params))
        params = {"r": 6.0, "gradient": "detached"}
        cases.append(HeadCase("sphereface2_fused-C-detached", "sphereface2_fused", params))
        cases.append(
            HeadCase("sphereface2_fused-two-classes", "sphereface2_fused", {}, num_classes=2)
        )
        cases.append(
            HeadCase(
                "sphereface2_fused-paper-float32",
                "sphereface2_fused",
                {},
                torch.float32,
                batch_sizes=(2, 5, 1),
                tol=1e-5,
            )
        )
    margin_heads = [
        ("softmax", {}),
        ("normface", {"s": 4.0}),
        ("cosface", {"s": 4.0, "m": 0.35}),
        ("arcface", {"s": 4.0, "m": 0.5, "gradient": "full"}),
        ("arcface", {"s": 4.0, "m": 0.5, "gradient": "detached"}),
        ("sphereface", {"s": 4.0, "m": 1.5, "gradient": "detached"}),
        ("sphereface", {"s": 4.0, "m": 1.5, "gradient": "full"}),
    ]
    for name, params in margin_heads:
        suffix = f"-{params['gradient']}" if "gradient" in params else ""
        cases.append(HeadCase(f"{name}{suffix}", name, params))
    cases.append(HeadCase("arcface-paper-float32", "arcface", {}, torch.float32, tol=1e-5))
    cases.append(HeadCase("softmax-float32", "softmax", {}, torch.float32, tol=1e-5))
    cases.append(HeadCase("cosface-no-positive", "cosface", {"s": 4.0}, labels="first_shard"))
    cases.append(HeadCase("softmax-ragged", "softmax", {}, batch_sizes=(1, 4, 2)))
    cases.append(HeadCase("arcface-two-forwards", "arcface", {"s": 4.0}, forwards=2))
    cases.append(HeadCase("arcface-two-classes", "arcface", {"s": 4.0}, num_classes=2))
    cases.append(HeadCase("softmax-two-classes", "softmax", {}, num_classes=2))
    return cases


HEAD_CASES = _cases()


def _global_batch(case: HeadCase, world: int, draw: int) -> tuple[torch.Tensor, torch.Tensor]:
    sizes = case.batch_sizes[:world]
    gen = torch.Generator().manual_seed(100 * draw + world)
    x = 1.7 * torch.randn(sum(sizes), DIM, generator=gen, dtype=case.dtype)
    if case.labels == "first_shard":
        start, end = class_shard(case.num_classes, 0, world)
        y = torch.randint(start, end, (sum(sizes),), generator=gen)
    else:
        y = torch.randint(0, case.num_classes, (sum(sizes),), generator=gen)
    return x, y


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return 0.0 if a.numel() == 0 else float((a - b).abs().max())


def _run_head_case(case: HeadCase, world: int, me: int) -> dict[str, Any]:
    sizes = case.batch_sizes[:world]
    offset, count = sum(sizes[:me]), sizes[me]
    torch.manual_seed(SEED)
    plain = build_head(case.name, case.num_classes, DIM, **case.params).to(case.dtype)
    sharded = build_sharded_head(case.name, case.num_classes, DIM, seed=SEED, **case.params)
    sharded = sharded.to(case.dtype)
    start, end = sharded.class_start, sharded.class_end
    out: dict[str, Any] = {
        "init": _max_diff(sharded.weight.detach(), plain.weight.detach()[start:end]),
        "shard": (start, end),
    }

    plain_loss, sharded_loss, plain_inputs, local_inputs = 0.0, 0.0, [], []
    for draw in range(case.forwards):
        x, y = _global_batch(case, world, draw)
        xp = x.clone().requires_grad_()
        xl = x[offset : offset + count].clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case.autocast):
            loss_p, stats_p = plain(xp, y, return_stats=True)
            loss_s, stats_s = sharded(xl, y[offset : offset + count], return_stats=True)
        plain_loss, sharded_loss = plain_loss + loss_p, sharded_loss + loss_s
        plain_inputs.append(xp)
        local_inputs.append(xl)
        out["stats"] = max(_max_diff(stats_p[k], stats_s[k]) for k in stats_p)
        out["stat_keys"] = sorted(stats_s) == sorted(stats_p)
    plain_loss.backward()
    sharded_loss.backward()

    out["loss"] = _max_diff(plain_loss.detach(), sharded_loss.detach())
    out["loss_value"] = float(plain_loss)
    out["embeddings"] = max(
        _max_diff(xp.grad[offset : offset + count], xl.grad)
        for xp, xl in zip(plain_inputs, local_inputs)
    )
    out["embedding_grad_scale"] = max(float(xp.grad.abs().max()) for xp in plain_inputs)
    weight_grad = sharded.weight.grad
    out["weight"] = _max_diff(plain.weight.grad[start:end], weight_grad)
    out["weight_grad_scale"] = float(plain.weight.grad.abs().max())
    if hasattr(plain, "bias"):
        plain_bias = plain.bias.grad
        if plain_bias.dim() == 1:  # softmax: a bias per class, sharded like the weight
            plain_bias = plain_bias[start:end]
        out["bias"] = _max_diff(plain_bias, sharded.bias.grad)
        out["bias_value"] = _max_diff(
            plain.bias.detach()[start:end] if plain.bias.dim() else plain.bias.detach(),
            sharded.bias.detach(),
        )
    return out


def run_head_cases(ctx: DistributedContext) -> dict[str, dict[str, Any]]:
    """Every :data:`HEAD_CASES` entry on this rank; a failing case records its traceback."""
    results = {}
    for case in HEAD_CASES:
        try:
            results[case.id] = _run_head_case(case, ctx.world_size, ctx.rank)
        except Exception:  # reported per case by the parent
            results[case.id] = {"error": traceback.format_exc()}
    return results


# -- collectives, process group, checkpoints, DDP -----------------------------------------


def _routing(method: str, me: int, world: int) -> dict[str, Any]:
    """all_gather_with_grad: rank r's loss is sum(coeff_r * gathered); the exact gradient of
    the sum over ranks of those losses w.r.t. rank j's rows is sum_r coeff_r[rows of j]."""
    sizes = [2 + r for r in range(world)]  # ragged on purpose
    gen = torch.Generator().manual_seed(5)
    coeffs = [torch.randn(sum(sizes), 3, generator=gen, dtype=torch.float64) for _ in sizes]
    rows = torch.randn(sizes[me], 3, dtype=torch.float64).requires_grad_()
    gathered = all_gather_with_grad(rows, method=method)
    owner = torch.cat([torch.full((n,), r) for r, n in enumerate(sizes)])
    (gathered * coeffs[me]).sum().backward()
    expected = sum(coeffs)[owner == me]
    own_rows = gathered.detach()[owner == me]
    return {
        "forward": _max_diff(own_rows, rows.detach()),
        "backward": _max_diff(rows.grad, expected),
        "gathered_rows": gathered.shape[0],
    }


def _replicate_and_sum(me: int, world: int) -> dict[str, Any]:
    bias = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    rows = torch.full((2, 2), float(me + 1), dtype=torch.float64, requires_grad=True)
    gathered, (b,) = gather_and_replicate(rows, (bias,))
    # rank r contributes (r + 1) * b: the summed bias gradient is sum_r (r + 1)
    partial = (me + 1) * b + gathered.sum() * 0.0
    total = global_sum(partial)
    (3.0 * total).backward()  # identity backward: d(3 total)/d partial_r = 3 on every rank
    return {
        "bias_grad": float(bias.grad),
        "expected_bias_grad": 3.0 * sum(r + 1 for r in range(world)),
        "total": float(total.detach()),
        "expected_total": 0.5 * sum(r + 1 for r in range(world)),
    }


def run_collectives(ctx: DistributedContext) -> dict[str, Any]:
    me, world = ctx.rank, ctx.world_size
    barrier()
    out: dict[str, Any] = {
        "rank": rank(),
        "world": world_size(),
        "is_main": is_main(),
        "backend": ctx.backend,
        "sizes": gather_sizes(me + 1),
        "labels": all_gather_rows(torch.tensor([10 * me, 10 * me + 1])).tolist(),
        "max": all_reduce_max(torch.tensor([float(me), -float(me)])).tolist(),
        "scalars_mean": all_reduce_scalars({"a": torch.tensor(float(me)), "b": 2.0}),
        "scalars_max": all_reduce_scalars({"a": float(me)}, op="max"),
    }
    for method in ("all_reduce", "reduce_scatter"):
        out[f"routing_{method}"] = _routing(method, me, world)
    out["replicate"] = _replicate_and_sum(me, world)
    return out


def run_checkpoints(ctx: DistributedContext) -> dict[str, Any]:
    """gather_full_weight / full_state_dict / load_full_state_dict against the plain head,
    and the two init modes."""
    out: dict[str, Any] = {}
    for name in ("sphereface2", "softmax"):
        torch.manual_seed(SEED)
        plain = build_head(name, 7, DIM)
        sharded = build_sharded_head(name, 7, DIM, seed=SEED)
        full = sharded.full_state_dict(dst=0)
        everywhere = sharded.full_state_dict(dst=None)
        out[f"{name}_dst0_is_none_elsewhere"] = (full is None) == (ctx.rank != 0)
        reference = plain.state_dict()
        for label, state in (("dst0", full), ("all", everywhere)):
            if state is not None:
                out[f"{name}_{label}"] = sorted(state) == sorted(reference) and all(
                    torch.equal(state[k], reference[k]) for k in reference
                )
        last = sharded.gather_full_weight(dst=ctx.world_size - 1)
        out[f"{name}_weight_on_last"] = (
            None if last is None else torch.equal(last, reference["weight"])
        )
        # load a different plain head's state dict: the shard takes its rows
        torch.manual_seed(SEED + 1)
        other = build_head(name, 7, DIM).state_dict()
        sharded.load_full_state_dict(other)
        start, end = sharded.class_start, sharded.class_end
        out[f"{name}_loaded"] = torch.equal(sharded.weight.detach(), other["weight"][start:end])
        back = sharded.full_state_dict(dst=None)
        out[f"{name}_round_trip"] = all(torch.equal(back[k], other[k]) for k in other)
    shard_mode = build_sharded_head("sphereface2", 7, DIM, init="shard", seed=SEED)
    start, end = shard_mode.class_start, shard_mode.class_end
    again = init_proxy_rows(7, DIM, start, end, mode="shard", seed=SEED)
    out["shard_init_deterministic"] = torch.equal(shard_mode.weight.detach(), again)
    out["shard_init_all_rows"] = shard_mode.gather_full_weight(dst=None)
    return out


class _Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, DIM)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(images)


def run_ddp(ctx: DistributedContext, head_name: str, hook: bool = True) -> dict[str, Any]:
    """A DDP backbone with the sum hook and a sharded head give the single-process gradients
    of backbone + plain head on the global batch (one SGD step, then the next loss).
    Without the hook (DDP's default averaging) the backbone gradient is 1 / world of it."""
    world, me = ctx.world_size, ctx.rank
    sizes = [3] * world
    gen = torch.Generator().manual_seed(21)
    images = torch.randn(sum(sizes), 4, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 7, (sum(sizes),), generator=gen)
    params = {"r": 6.0} if head_name == "sphereface2" else {"s": 4.0}

    torch.manual_seed(SEED)
    plain = build_head(head_name, 7, DIM, **params).double()
    torch.manual_seed(3)
    backbone = _Backbone().double()
    reference: list[tuple[float, torch.Tensor]] = []
    opt = torch.optim.SGD([*backbone.parameters(), *plain.parameters()], lr=0.1, momentum=0.9)
    reference_norms = []
    for _ in range(2):
        opt.zero_grad()
        loss = plain(backbone(images), labels)
        loss.backward()
        reference.append((float(loss), backbone.fc.weight.grad.clone()))
        every = [*backbone.parameters(), *plain.parameters()]
        max_abs = max(float(p.grad.abs().max()) for p in every)
        reference_norms.append((float(nn.utils.clip_grad_norm_(every, CLIP)), max_abs))
        opt.step()

    sharded = build_sharded_head(head_name, 7, DIM, seed=SEED, **params).double()
    torch.manual_seed(3)
    ddp = nn.parallel.DistributedDataParallel(_Backbone().double())
    if hook:
        ddp.register_comm_hook(None, sum_allreduce_hook)
    opt = torch.optim.SGD([*ddp.parameters(), *sharded.parameters()], lr=0.1, momentum=0.9)
    local = slice(sum(sizes[:me]), sum(sizes[: me + 1]))
    out: dict[str, Any] = {"loss": [], "backbone_grad": [], "backbone_grad_ratio": []}
    out["norm"], out["inf_norm"] = [], []
    for (ref_loss, ref_grad), (ref_norm, ref_max) in zip(reference, reference_norms):
        opt.zero_grad()
        loss = sharded(ddp(images[local]), labels[local])
        loss.backward()
        out["loss"].append(abs(float(loss) - ref_loss))
        grad = ddp.module.fc.weight.grad
        out["backbone_grad"].append(_max_diff(grad, ref_grad))
        out["backbone_grad_ratio"].append(float((grad * ref_grad).sum() / ref_grad.square().sum()))
        if not hook:
            break  # the steps diverge from here on; one comparison shows the scale
        replicated = [*ddp.parameters(), *sharded.replicated_parameters()]
        inf_norm = global_grad_norm(replicated, sharded.sharded_parameters(), norm_type=math.inf)
        out["inf_norm"].append(abs(float(inf_norm) - ref_max))
        norm = clip_grad_norm_(replicated, sharded.sharded_parameters(), CLIP)
        out["norm"].append(abs(float(norm) - ref_norm))
        opt.step()
    start, end = sharded.class_start, sharded.class_end
    out["weight_after_steps"] = _max_diff(sharded.weight.detach(), plain.weight.detach()[start:end])
    return out


def run_bad_label(ctx: DistributedContext) -> str:
    """A bad label on the last rank only: every rank must raise the same error (no hang)."""
    head = build_sharded_head("sphereface2", 7, DIM, seed=SEED)
    labels = torch.tensor([1, 2]) if ctx.rank < ctx.world_size - 1 else torch.tensor([3, 9])
    try:
        head(torch.randn(2, DIM), labels)
    except ValueError as error:
        return str(error)
    return "no error"


def run_all(ctx: DistributedContext) -> dict[str, Any]:
    """Everything above in one spawn (starting processes dominates the cost)."""
    tasks: dict[str, Callable[[], Any]] = {
        "collectives": lambda: run_collectives(ctx),
        "heads": lambda: run_head_cases(ctx),
        "checkpoints": lambda: run_checkpoints(ctx),
        "ddp_sphereface2": lambda: run_ddp(ctx, "sphereface2"),
        "ddp_arcface": lambda: run_ddp(ctx, "arcface"),
        "ddp_sphereface2_no_hook": lambda: run_ddp(ctx, "sphereface2", hook=False),
        "bad_label": lambda: run_bad_label(ctx),
        "partial_fc": lambda: run_partial_fc(ctx),
    }
    results: dict[str, Any] = {}
    for key, task in tasks.items():
        try:
            results[key] = task()
        except Exception:
            results[key] = {"error": traceback.format_exc()}
    return results
