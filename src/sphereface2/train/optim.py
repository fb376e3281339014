"""SGD parameter groups and iteration-based learning-rate schedules.

Schedules are pure functions of the iteration (one iteration = one optimiser step), so a
resumed run needs only the iteration counter to continue the schedule exactly; the trainer
writes ``lr_at(i)`` into the optimiser's groups before step ``i``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn


def parameter_groups(
    modules: Iterable[nn.Module], weight_decay: float, no_decay_bias_bn: bool = False
) -> list[dict]:
    """Parameter groups for SGD over all trainable parameters of ``modules``.

    With ``no_decay_bias_bn=False`` (the official OpenSphere recipe) every parameter gets
    ``weight_decay``. With ``True`` parameters with fewer than two dimensions (biases,
    BatchNorm/PReLU weights, a head's scalar bias) get no weight decay. Empty groups are
    left out; the order of parameters is deterministic (module order, then registration).
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in modules:
        for param in module.parameters():
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (no_decay if no_decay_bias_bn and param.ndim < 2 else decay).append(param)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_sgd(
    modules: Sequence[nn.Module],
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool = False,
    no_decay_bias_bn: bool = False,
) -> torch.optim.SGD:
    """SGD with momentum over ``modules`` (e.g. backbone and head), see ``parameter_groups``."""
    groups = parameter_groups(modules, weight_decay, no_decay_bias_bn)
    if not groups:
        raise ValueError("no trainable parameters to optimise")
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)


class LRSchedule:
    """Learning rate as a function of the iteration i (0-based: the lr used for step i + 1).

    ``kind="multistep"``: ``base_lr * gamma ** (number of milestones <= i)``, i.e. the lr
    drops *after* ``milestone`` steps, as PyTorch's MultiStepLR stepped once per iteration.
    ``kind="cosine"``: half-cosine from ``base_lr`` at the end of warm-up to ``min_lr`` at
    ``iterations``. Warm-up multiplies by a factor rising linearly from ``warmup_factor``
    at i = 0 to 1 at i = ``warmup_iters``.
    """

    def __init__(
        self,
        base_lr: float,
        iterations: int,
        kind: str = "multistep",
        milestones: Sequence[int] = (),
        gamma: float = 0.1,
        min_lr: float = 0.0,
        warmup_iters: int = 0,
        warmup_factor: float = 0.1,
    ) -> None:
        if kind not in ("multistep", "cosine"):
            raise ValueError(f"unknown schedule type {kind!r}; valid types: multistep, cosine")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.base_lr = float(base_lr)
        self.iterations = int(iterations)
        self.kind = kind
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        self.min_lr = float(min_lr)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, iteration: int) -> float:
        if self.kind == "multistep":
            lr = self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, iteration)
        else:
            span = max(1, self.iterations - self.warmup_iters)
            progress = min(1.0, max(0.0, (iteration - self.warmup_iters) / span))
            cos = 0.5 * (1.0 + math.cos(math.pi * progress))
            lr = self.min_lr + (self.base_lr - self.min_lr) * cos
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            lr *= self.warmup_factor + (1.0 - self.warmup_factor) * alpha
        return lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr`` into every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
