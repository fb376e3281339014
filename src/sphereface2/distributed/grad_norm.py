"""Gradient-norm clipping when some parameters are sharded across ranks.

``torch.nn.utils.clip_grad_norm_`` sees only this rank's parameters. With a class-sharded
head each rank holds different proxy rows, so the norm over the whole model is

    ||g||^2 = sum over replicated params (identical on every rank, counted once)
            + sum over ranks of the local sharded params' squared norms,

which needs one scalar all-reduce. Clipping with it scales every rank's gradients by the
same factor, exactly as clipping the single-process model would.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sphereface2.distributed.collectives import all_reduce_max, global_sum

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup


def _grads(params: Iterable[Tensor]) -> list[Tensor]:
    return [p.grad.detach() for p in params if p.grad is not None]


def global_grad_norm(
    replicated: Iterable[Tensor],
    sharded: Iterable[Tensor],
    group: ProcessGroup | None = None,
    norm_type: float = 2.0,
) -> Tensor:
    """The norm of all gradients of the distributed model (float32 or wider, on the device
    of the gradients; CPU if there are none). ``replicated`` parameters must have the same
    gradient on every rank (e.g. after DDP's all-reduce); ``sharded`` ones are disjoint
    pieces. ``norm_type`` is 2 or inf. Every rank must call this."""
    replicated_grads, sharded_grads = _grads(replicated), _grads(sharded)
    every = replicated_grads + sharded_grads
    device = every[0].device if every else torch.device("cpu")
    dtype = torch.promote_types(torch.float32, every[0].dtype) if every else torch.float32
    zero = torch.zeros((), device=device, dtype=dtype)

    def fold(grads: list[Tensor], op: str) -> Tensor:
        total = zero
        for grad in grads:
            if grad.numel() == 0:  # an empty shard
                continue
            grad = grad.to(dtype)
            if op == "max":
                total = torch.maximum(total, grad.abs().max())
            else:
                total = total + grad.square().sum()
        return total

    if norm_type == math.inf:
        local = torch.maximum(fold(replicated_grads, "max"), fold(sharded_grads, "max"))
        return all_reduce_max(local, group)
    if norm_type != 2.0:
        raise ValueError(f"norm_type must be 2 or inf, got {norm_type}")
    shards = global_sum(fold(sharded_grads, "sum"), group)
    return (fold(replicated_grads, "sum") + shards).sqrt()


def clip_grad_norm_(
    replicated: Iterable[Tensor],
    sharded: Iterable[Tensor],
    max_norm: float,
    group: ProcessGroup | None = None,
    norm_type: float = 2.0,
) -> Tensor:
    """Scale all gradients so that their global norm is at most ``max_norm``, like
    ``torch.nn.utils.clip_grad_norm_`` on the whole model; returns the norm before clipping.
    Every rank must call this with its parameters split the same way."""
    replicated, sharded = list(replicated), list(sharded)
    total = global_grad_norm(replicated, sharded, group, norm_type)
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for grad in _grads(replicated + sharded):
        grad.mul_(scale.to(grad.dtype))
    return total
