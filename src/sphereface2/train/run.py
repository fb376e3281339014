"""One training run's live objects, and one optimiser step over them.

``TrainingRun`` builds the run from its config (data, backbone, head, optimiser, schedule,
batch stream), puts a checkpoint back through
:class:`~sphereface2.models.training_state.TrainingState`, runs iterations (micro-batches,
autocast, gradient scaling, clipping, the distributed agreements) and writes checkpoints.
The loop around it is :mod:`sphereface2.train.trainer`.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sphereface2.config import TrainConfig
from sphereface2.distributed.grad_norm import clip_grad_norm_
from sphereface2.models.checkpoint import atomic_save, checkpoint_name, save_checkpoint
from sphereface2.models.run_folder import RunFolder
from sphereface2.models.sharded_checkpoint import shard_file_name
from sphereface2.models.training_state import TrainingState
from sphereface2.train.building import (
    autocast,
    autocast_dtype,
    build_model,
    build_training_head,
    build_training_set,
    per_process_batch,
)
from sphereface2.train.data_loading import TrainBatches
from sphereface2.train.failure import NonFiniteLossError, all_finite, state_is_finite
from sphereface2.train.init_weights import init_backbone
from sphereface2.train.logging import SilentLog, TextLog
from sphereface2.train.optim import LRSchedule, build_sgd, set_lr
from sphereface2.train.parallel import Parallel
from sphereface2.train.rng import capture_rng_state, restore_rng_state, seed_everything
from sphereface2.train.validation import load_val_sets, validate


class TrainingRun:
    """State of one ``train`` call. Kept as one object so the loop reads top to bottom."""

    def __init__(
        self,
        cfg: TrainConfig,
        run: RunFolder,
        parallel: Parallel,
        checkpoint: dict[str, Any] | None,
        checkpoint_path: Path | None,
    ) -> None:
        self.cfg = cfg
        self.run = run
        self.par = parallel
        self.device = device = parallel.device
        self.log: TextLog | SilentLog = SilentLog()  # rank 0's log, once the run has started
        self.notes: list[str] = []  # lines for the log, which does not exist yet
        self.amp_dtype = autocast_dtype(cfg.runtime.amp, device)
        self.start_iteration = int(checkpoint["iteration"]) if checkpoint else 0
        self.iteration = self.start_iteration
        self.last_checkpoint = checkpoint_path
        self.last_saved_iteration = self.start_iteration if checkpoint else -1

        seed_everything(cfg.seed)
        self.val_sets = load_val_sets(
            [(v.name, v.path) for v in cfg.data.val], cfg.model.input_size
        )
        self.dataset = build_training_set(cfg)
        self.num_classes = int(self.dataset.num_classes)
        self.backbone = build_model(cfg.model)
        init = cfg.model.init
        if init is not None and checkpoint is None:  # a fresh start from pretrained weights
            self.notes += init_backbone(self.backbone, init, cfg.model.init_strict).log_lines()
        elif init is not None:
            self.notes.append(f"model.init not read ({init}): resuming, the checkpoint wins")
        self.backbone.to(device)
        self.head = build_training_head(cfg, self.num_classes).to(device)
        if cfg.runtime.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        self.replicated_params = [*self.backbone.parameters(), *self.head.replicated_parameters()]
        self.sharded_params = self.head.sharded_parameters()
        self.optimizer = build_sgd(
            [self.backbone, self.head],
            lr=cfg.optim.lr,
            momentum=cfg.optim.momentum,
            weight_decay=cfg.optim.weight_decay,
            nesterov=cfg.optim.nesterov,
            no_decay_bias_bn=cfg.optim.no_decay_bias_bn,
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.runtime.amp == "fp16")
        sched = cfg.schedule
        self.schedule = LRSchedule(
            cfg.optim.lr,
            sched.iterations,
            sched.type,
            sched.milestones,
            sched.gamma,
            sched.min_lr,
            sched.warmup_iters,
            sched.warmup_factor,
        )
        self.accumulation = cfg.optim.accumulation_steps
        self.micro_batch = per_process_batch(cfg, parallel.world_size)
        self.batches = TrainBatches(
            self.dataset,
            self.micro_batch,
            seed=cfg.seed,
            num_workers=cfg.data.num_workers,
            rank=parallel.rank,
            world_size=parallel.world_size,
            pin_memory=device.type == "cuda",
        )
        self.state = TrainingState(
            cfg,
            self.backbone,
            self.head,
            self.optimizer,
            self.scaler,
            self.batches,
            dataset_size=len(self.dataset),
            num_classes=self.num_classes,
            rank=parallel.rank,
            world_size=parallel.world_size,
            shard_files=parallel.distributed,
        )
        if checkpoint is not None:
            self.notes += self.state.load_state_dict(checkpoint, checkpoint_path)
        # forward passes change buffers (BatchNorm statistics): see restore_good_state
        self.has_buffers = any(True for m in (self.backbone, self.head) for _ in m.buffers())
        self.phase = "loop"  # "data", "step", "update" inside step(); see failure.py
        self._step_start: tuple[dict[str, int], dict[str, Any]] | None = None
        self._forwarded = False
        self.model: nn.Module = self.backbone  # DDP-wrapped by start() with several processes

    @property
    def distributed(self) -> bool:
        return self.par.distributed

    def start(self) -> None:
        """Wrap the backbone for data parallelism (a collective: once every rank passed its
        checks). DDP broadcasts rank 0's weights, which include a resumed state."""
        self.model = self.par.wrap_backbone(self.backbone)

    def save(self) -> Path:
        """Write a checkpoint of the current iteration (once per iteration). With several
        processes every rank must call this: each writes its shard, then rank 0 the main
        file that commits the checkpoint (see :mod:`sphereface2.models.sharded_checkpoint`)."""
        if self.last_saved_iteration != self.iteration:
            main, shard = self.state.state_dict(self.iteration)
            folder = self.run.checkpoints
            if shard is not None:
                folder.mkdir(parents=True, exist_ok=True)
                name = shard_file_name(self.iteration, self.par.rank, self.par.world_size)
                atomic_save(shard, folder / name)
                self.par.barrier()  # every shard is on disk before the commit
            if self.par.is_main:
                save_checkpoint(main, folder, self.iteration, self.cfg.runtime.keep_last)
            self.par.barrier()
            self.last_checkpoint = folder / checkpoint_name(self.iteration)
            self.last_saved_iteration = self.iteration
        assert self.last_checkpoint is not None
        return self.last_checkpoint

    def step(self, want_stats: bool) -> tuple[float, dict[str, float]]:
        """One iteration; returns (mean loss over the micro-batches, head stats).
        ``phase`` and the start snapshot let a failure handler rewind a failed iteration."""
        self._step_start = (self.batches.state_dict(), capture_rng_state())
        self._forwarded = False
        set_lr(self.optimizer, self.schedule(self.iteration))
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        stats: dict[str, float] = {}
        for micro in range(self.accumulation):
            self.phase = "data"
            images, labels = next(self.batches)
            self.phase = "step"
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            if self.cfg.runtime.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            last = micro == self.accumulation - 1
            # DDP all-reduces the backbone's gradients on the last micro-batch only
            defer = self.par.distributed and not last
            sync = self.model.no_sync() if defer else contextlib.nullcontext()
            with sync:
                with autocast(self.device, self.amp_dtype):
                    self._forwarded = True
                    embeddings = self.model(images)
                    # before the head's own input check, so that the error names the
                    # iteration; agreed by all ranks, which then stop alike
                    if self.par.any(not all_finite([embeddings.detach()])):
                        raise NonFiniteLossError(
                            f"non-finite embedding at iteration {self.iteration + 1}: the "
                            "backbone output NaN/inf; the step was not applied"
                        )
                    if want_stats and last:
                        loss, raw_stats = self.head(embeddings, labels, return_stats=True)
                        stats = {k: float(v) for k, v in raw_stats.items()}
                    else:
                        loss = self.head(embeddings, labels)
                self.scaler.scale(loss / self.accumulation).backward()
            total += loss.detach().float()
        loss_value = float(total) / self.accumulation
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"non-finite loss ({loss_value}) at iteration {self.iteration + 1}; the step "
                "was not applied"
            )
        clip = self.cfg.optim.max_grad_norm
        if clip is not None or self.par.distributed:
            self.scaler.unscale_(self.optimizer)  # a no-op without a loss scaler
            self.par.agree_on_overflow(self.scaler, self.optimizer)
        if clip is not None:
            # the norm over the whole model: replicated parameters once, every rank's shard
            norm = clip_grad_norm_(self.replicated_params, self.sharded_params, clip)
            stats["grad_norm"] = float(norm)
        self.phase = "update"
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.iteration += 1
        self.phase = "loop"
        return loss_value, stats

    def restore_good_state(self) -> bool:
        """After a failure: back to the end of the last completed iteration, and whether
        that state is intact (see :mod:`sphereface2.train.failure`)."""
        mid_step = self.phase != "loop"
        if self.phase == "update" or (mid_step and self._forwarded and self.has_buffers):
            return False
        if mid_step and self._step_start is not None:
            position, rng = self._step_start
            self.batches.load_state_dict(position)
            restore_rng_state(rng)
            self.phase = "loop"
        return state_is_finite([self.backbone, self.head], self.optimizer)

    def validate(self) -> dict[str, float]:
        if not self.val_sets:
            return {}
        return validate(
            self.backbone,
            self.val_sets,
            self.cfg.data.val_batch_size,
            self.device,
            self.amp_dtype,
            self.cfg.runtime.channels_last,
            self.cfg.data.num_workers,
        )
