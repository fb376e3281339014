"""Collectives with the gradients that a class-sharded head (and its trainer) needs.

The sharded heads follow one rule: every rank computes the SAME global loss ``L`` (a sum
over ranks of per-rank partial terms), and every rank calls ``L.backward()``. Gradients are
then exact, not averaged:

* :func:`all_gather_with_grad` concatenates the ranks' row blocks (embeddings). Rank r's
  partial terms depend on every rank's rows, so the gradient of ``L`` with respect to rank
  j's rows is the SUM over ranks of the gradients of their terms with respect to those rows.
  The backward therefore sum-reduces the (B_global, d) gradient and keeps this rank's slice:
  ``reduce_scatter`` on NCCL, ``all_reduce`` + slice where reduce-scatter is unavailable.
* :func:`gather_and_replicate` does the same and also passes replicated parameters (the
  SphereFace2 bias) through, summing their gradients over ranks in the same backward call,
  so the two reductions always run in the same order on every rank.
* :func:`global_sum` adds per-rank partial values into a value that every rank then uses
  identically; its backward is the identity, because each rank's incoming gradient is
  already the gradient of the one global loss with respect to the sum. (This differs from
  ``torch.distributed.nn.all_reduce``, whose backward sums gradients over ranks: that is
  right when each rank back-propagates a different loss, not a replicated one.)

With no process group (a single process) every function here is an identity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor

from sphereface2.distributed.process_group import backend_name, is_initialized, rank, world_size

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

GATHER_BACKWARD_METHODS = ("auto", "reduce_scatter", "all_reduce")
REDUCE_OPS = ("sum", "mean", "max", "min")


def _distributed(group: ProcessGroup | None) -> bool:
    return is_initialized() and world_size(group) > 1


def gather_sizes(
    count: int, group: ProcessGroup | None = None, device: torch.device | str = "cpu"
) -> list[int]:
    """Every rank's ``count`` (e.g. its local batch size), in rank order."""
    if not _distributed(group):
        return [int(count)]
    mine = torch.tensor([int(count)], dtype=torch.int64, device=device)
    parts = [torch.empty_like(mine) for _ in range(world_size(group))]
    dist.all_gather(parts, mine, group=group)
    return [int(p.item()) for p in parts]


def _padded(tensor: Tensor, rows: int) -> Tensor:
    """``tensor`` with zero rows appended up to ``rows`` rows (contiguous)."""
    if tensor.shape[0] == rows:
        return tensor.contiguous()
    out = tensor.new_zeros((rows, *tensor.shape[1:]))
    out[: tensor.shape[0]] = tensor
    return out


def _check_sizes(tensor: Tensor, sizes: Sequence[int], group: ProcessGroup | None) -> list[int]:
    sizes = [int(s) for s in sizes]
    if len(sizes) != world_size(group):
        raise ValueError(f"sizes has {len(sizes)} entries for a world of {world_size(group)}")
    if sizes[rank(group)] != tensor.shape[0]:
        raise ValueError(
            f"rank {rank(group)} has {tensor.shape[0]} rows but sizes says {sizes[rank(group)]}"
        )
    return sizes


def all_gather_rows(
    tensor: Tensor, group: ProcessGroup | None = None, *, sizes: Sequence[int] | None = None
) -> Tensor:
    """Concatenate every rank's ``tensor`` along dim 0 in rank order (no gradient).

    Ranks may hold different numbers of rows; pass ``sizes`` (from :func:`gather_sizes`) to
    save a collective, otherwise they are gathered first. Trailing dims and dtype must match.
    """
    if not _distributed(group):
        return tensor
    if sizes is None:
        sizes = gather_sizes(tensor.shape[0], group, tensor.device)
    sizes = _check_sizes(tensor, sizes, group)
    padded = _padded(tensor.detach(), max(sizes))
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


def _resolve_method(method: str, group: ProcessGroup | None) -> str:
    if method not in GATHER_BACKWARD_METHODS:
        raise ValueError(f"method must be one of {GATHER_BACKWARD_METHODS}, got {method!r}")
    if method == "auto":
        return "reduce_scatter" if backend_name(group) == "nccl" else "all_reduce"
    return method


def _reduce_rows(grad: Tensor, sizes: list[int], group: ProcessGroup | None, method: str) -> Tensor:
    """Sum ``grad`` (rows of all ranks) over ranks and return this rank's rows."""
    me, rows = rank(group), max(sizes)
    blocks = torch.split(grad, sizes)
    if method == "reduce_scatter":
        inputs = [_padded(block, rows) for block in blocks]
        out = grad.new_empty((rows, *grad.shape[1:]))
        dist.reduce_scatter(out, inputs, group=group)
    else:
        stacked = torch.stack([_padded(block, rows) for block in blocks])  # a fresh buffer
        dist.all_reduce(stacked, group=group)
        out = stacked[me]
    return out[: sizes[me]]


class _GatherRows(torch.autograd.Function):
    """Forward: all-gather rows and pass replicated tensors through.

    Backward: reduce the row gradient to its owners, then sum every replicated tensor's
    gradient over ranks, always in that order.
    """

    @staticmethod
    def forward(ctx: Any, group: Any, sizes: list[int], method: str, rows: Tensor, *reps: Tensor):
        ctx.group, ctx.sizes, ctx.method = group, sizes, method
        gathered = all_gather_rows(rows, group, sizes=sizes)
        return (gathered, *(r.clone() for r in reps))

    @staticmethod
    def backward(ctx: Any, grad_rows: Tensor, *grad_reps: Tensor):
        own = _reduce_rows(grad_rows.contiguous(), ctx.sizes, ctx.group, ctx.method)
        summed = []
        for grad in grad_reps:
            grad = grad.contiguous().clone()
            dist.all_reduce(grad, group=ctx.group)
            summed.append(grad)
        return (None, None, None, own, *summed)


def gather_and_replicate(
    tensor: Tensor,
    replicated: Sequence[Tensor],
    group: ProcessGroup | None = None,
    *,
    sizes: Sequence[int] | None = None,
    method: str = "auto",
) -> tuple[Tensor, list[Tensor]]:
    """All-gather ``tensor``'s rows with gradient routing, and use ``replicated`` tensors.

    Returns the (sum of sizes, ...) concatenation and, for each replicated tensor (equal on
    all ranks, e.g. a bias kept in sync), a copy whose gradient is summed over ranks in the
    backward. ``method`` picks the backward reduction ("auto": reduce_scatter on NCCL,
    all_reduce + slice otherwise). Every rank must call this, with the same replicated
    shapes, and back-propagate through the outputs.
    """
    method = _resolve_method(method, group)
    if not _distributed(group):
        return tensor, list(replicated)
    if sizes is None:
        sizes = gather_sizes(tensor.shape[0], group, tensor.device)
    sizes = _check_sizes(tensor, sizes, group)
    gathered, *reps = _GatherRows.apply(group, sizes, method, tensor, *replicated)
    return gathered, reps


def all_gather_with_grad(
    tensor: Tensor,
    group: ProcessGroup | None = None,
    *,
    sizes: Sequence[int] | None = None,
    method: str = "auto",
) -> Tensor:
    """Concatenate every rank's rows; the backward sends each rank the summed gradient of
    its own rows (see the module docstring). Ranks may hold different numbers of rows."""
    gathered, _ = gather_and_replicate(tensor, (), group, sizes=sizes, method=method)
    return gathered


class _GlobalSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, tensor: Tensor, group: Any) -> Tensor:
        out = tensor.contiguous().clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        return grad, None


def global_sum(tensor: Tensor, group: ProcessGroup | None = None) -> Tensor:
    """Sum of the ranks' ``tensor`` (same shape on all), for a value every rank then uses
    identically (the global loss, a softmax normaliser). Backward: the identity."""
    if not _distributed(group):
        return tensor
    return _GlobalSum.apply(tensor, group)


def all_reduce_max(tensor: Tensor, group: ProcessGroup | None = None) -> Tensor:
    """Element-wise maximum over ranks, detached (e.g. the log-sum-exp shift)."""
    out = tensor.detach().clone()
    if _distributed(group):
        dist.all_reduce(out, op=dist.ReduceOp.MAX, group=group)
    return out


def all_reduce_scalars(
    values: Mapping[str, Tensor | float],
    group: ProcessGroup | None = None,
    *,
    op: str = "mean",
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Reduce named scalars (losses, metrics) over ranks in one collective; float64 on host.

    ``op`` is "sum", "mean", "max" or "min". ``device`` defaults to the current CUDA device
    on NCCL and the CPU otherwise.
    """
    if op not in REDUCE_OPS:
        raise ValueError(f"op must be one of {REDUCE_OPS}, got {op!r}")
    names = list(values)
    numbers = []
    for name in names:
        value = values[name]
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise ValueError(f"scalar {name!r} has shape {tuple(value.shape)}, not a scalar")
            value = value.detach().reshape(()).double().cpu()
        numbers.append(float(value))
    if not _distributed(group) or not names:
        return dict(zip(names, numbers))
    if device is None:
        on_nccl = backend_name(group) == "nccl"
        device = torch.device("cuda", torch.cuda.current_device()) if on_nccl else "cpu"
    packed = torch.tensor(numbers, dtype=torch.float64, device=device)
    reduce_op = {"max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}.get(op, dist.ReduceOp.SUM)
    dist.all_reduce(packed, op=reduce_op, group=group)
    if op == "mean":
        packed /= world_size(group)
    return dict(zip(names, packed.cpu().tolist()))


# No annotations on this one: DDP compares the hook's annotations with dist.GradBucket and
# Future[Tensor] at registration, and postponed (string) annotations fail that check.
def sum_allreduce_hook(state, bucket):
    """DDP communication hook that SUMS gradients over ranks instead of averaging them.

    ``state`` is the process group (None: the world), ``bucket`` a ``dist.GradBucket``;
    returns a ``torch.futures.Future`` of the reduced bucket.

    Register it on the backbone's DDP wrapper when the loss is a sharded head's global loss:
    ``ddp.register_comm_hook(group_or_None, sum_allreduce_hook)``. Each rank's backbone
    gradient is then already its exact share of the gradient of the one global loss, and
    the total is their sum; DDP's default averaging would divide it by the world size.
    """
    group = state if state is not None else dist.group.WORLD
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])
