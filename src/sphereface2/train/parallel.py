"""How the trainer runs on several processes (torchrun): one object the loop consults.

Data parallel for the backbone, class-sharded for the head:

* the backbone is wrapped in DistributedDataParallel with a communication hook that SUMS
  its gradients: the sharded head returns the loss of the whole global batch on every
  rank and routes each embedding's gradient back to the rank that computed it, so each
  rank's backbone gradient is already its share of the one global gradient;
* the head is never wrapped: each rank owns a class range (its proxies and their momentum
  never leave it) and its replicated parameters (the SphereFace2 bias) get summed
  gradients inside the head's backward;
* gradient clipping uses the norm over all ranks' shards; with fp16 a gradient overflow on
  any rank skips the step on every rank (otherwise the replicated weights would diverge);
* a stop request (Ctrl-C, SIGTERM) seen by any rank stops every rank after the same
  iteration, so their checkpoints agree.

With one process (no launcher) every method is a no-op or a plain call.
BatchNorm statistics stay per process (as in OpenSphere and InsightFace).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from sphereface2.distributed.collectives import all_reduce_max, sum_allreduce_hook
from sphereface2.distributed.process_group import DistributedContext, barrier

T = TypeVar("T")


@dataclass(frozen=True)
class Parallel:
    """This process's place in the run: rank, world size and device."""

    rank: int
    world_size: int
    device: torch.device

    @classmethod
    def from_context(cls, ctx: DistributedContext) -> Parallel:
        return cls(ctx.rank, ctx.world_size, ctx.device)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap_backbone(self, backbone: nn.Module) -> nn.Module:
        """DDP with summed gradients over the backbone (the backbone itself with one process)."""
        if not self.distributed:
            return backbone
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(backbone, device_ids=device_ids)
        ddp.register_comm_hook(None, sum_allreduce_hook)
        return ddp

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank (one tiny all-reduce)."""
        if not self.distributed:
            return flag
        value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self._comm_device())
        return bool(all_reduce_max(value).item())

    def on_every_rank(self, work: Callable[[], T]) -> T:
        """``work()`` on this rank; if it raised on any rank, every rank raises (a rank
        that went on alone would wait forever in the next collective)."""
        try:
            result = work()
        except Exception:
            self.any(True)
            raise
        if self.any(False):
            raise RuntimeError(
                f"rank {self.rank}: another process failed its start-up checks (its error says why)"
            )
        return result

    def agree_on_overflow(
        self, scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer
    ) -> None:
        """After ``scaler.unscale_(optimizer)``: make the fp16 scaler's inf/NaN verdict
        global, so that ``scaler.step`` skips (or takes) the step on every rank alike."""
        if not (self.distributed and scaler.is_enabled()):
            return
        # the verdict tensors the scaler's step() consults (one per device; one here)
        for found in scaler._found_inf_per_device(optimizer).values():  # noqa: SLF001
            dist.all_reduce(found, op=dist.ReduceOp.MAX)

    def barrier(self) -> None:
        if self.distributed:
            barrier()

    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")
