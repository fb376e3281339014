"""Training: ``train(cfg, out_dir)`` runs a whole config and resumes exactly.

    >>> from sphereface2.config import load_config
    >>> from sphereface2.train.trainer import train
    >>> result = train(load_config("configs/demo.yaml"), "runs/demo", resume="auto")

The trainer asks the registries for the backbone and the head (it never imports a concrete
model), reads the training set through :func:`sphereface2.data.training_sets.open_training_set`
and optimises with SGD under an iteration-based schedule. One *iteration* is one optimiser
step over ``data.batch_size`` images (split into ``optim.accumulation_steps`` micro-batches).

Exact resume: a checkpoint holds the weights, the optimiser (momentum buffers), the
gradient scaler, every RNG state and the data position (epoch, samples consumed); the
schedule is a pure function of the iteration. A run stopped at any checkpoint and resumed
reaches bit-identical weights on the CPU (on a GPU, up to the kernels' own determinism).

Fine-tuning: ``model.init`` starts a fresh run's backbone from pretrained weights
(:mod:`sphereface2.train.init_weights`); the head starts fresh. A resumed run ignores it:
the checkpoint holds every weight.

Processes: run as it is, one process trains on one device. Under ``torchrun`` (or any
launcher that sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) every process runs the same
call: the backbone is data parallel (DDP, summed gradients), the head is sharded by class
range (:mod:`sphereface2.heads.sharded`), each process reads its share of every global
batch, and rank 0 logs and writes the run folder (see :mod:`sphereface2.train.parallel`).
``data.batch_size`` is the global batch, so a config trains the same model on any number
of processes (up to floating-point summation order and per-process BatchNorm statistics).

Run folder: one process at a time (an OS lock, :mod:`sphereface2.train.run_lock`), and
nothing is written into it before every start-up check has passed (data, validation
sets, options, a resumable checkpoint): a refused start leaves the folder as it was.

Failures: a non-finite loss or embedding stops the run before the bad step is applied;
any failure mid-run is logged, recorded in summary.json and, when the last good state is
intact, saved as an emergency checkpoint (:mod:`sphereface2.train.failure`). Ctrl-C
(SIGINT) or SIGTERM finishes the current iteration, writes a checkpoint and raises
KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sphereface2.config import (
    ConfigError,
    ModelConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    flatten,
    resume_blocking_diff,
    save_config,
)
from sphereface2.data.label_noise import NoisyLabelDataset
from sphereface2.data.training_sets import open_training_set
from sphereface2.data.transforms import train_transform
from sphereface2.distributed.grad_norm import clip_grad_norm_
from sphereface2.distributed.process_group import distributed_session
from sphereface2.heads.sharded import ShardedHead, build_sharded_head
from sphereface2.models.checkpoint import (
    FORMAT_VERSION,
    MODEL_FORMAT,
    atomic_save,
    average_checkpoints,
    checkpoint_name,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from sphereface2.models.device import resolve_device
from sphereface2.models.model_config import build_backbone_from_config
from sphereface2.models.run_folder import RunFolder, open_run_folder
from sphereface2.models.sharded_checkpoint import (
    load_rows,
    shard_file_name,
    shard_payload,
    shard_rng,
    sharding_record,
    split_optimizer_state,
)
from sphereface2.train.classes_record import class_names_of, write_class_names
from sphereface2.train.data_loading import TrainBatches
from sphereface2.train.failure import (
    NonFiniteLossError,
    all_finite,
    record_failure,
    state_is_finite,
)
from sphereface2.train.init_weights import init_backbone
from sphereface2.train.label_noise_record import (
    describe_label_noise,
    label_noise_summary,
    write_label_noise,
)
from sphereface2.train.logging import (
    MetricsLogger,
    TextLog,
    format_duration,
    progress_line,
    truncate_jsonl,
)
from sphereface2.train.logging.curves import plot_training_curves
from sphereface2.train.optim import LRSchedule, build_sgd, set_lr
from sphereface2.train.parallel import Parallel
from sphereface2.train.rng import capture_rng_state, restore_rng_state, seed_everything
from sphereface2.train.run_lock import RunFolderClaim
from sphereface2.train.validation import load_val_sets, validate


class ResumeError(ValueError):
    """A checkpoint cannot continue this config (different recipe, model or data)."""


@dataclass
class TrainResult:
    """What a finished (or stopped) ``train`` call produced."""

    run_dir: Path
    iteration: int
    total_iterations: int
    status: str  # "completed" or "stopped" (stop_after reached)
    final_loss: float
    images_per_second: float
    elapsed_s: float
    last_checkpoint: Path | None
    model_path: Path | None
    averaged_iterations: list[int] = field(default_factory=list)
    val: dict[str, float] = field(default_factory=dict)
    val_averaged: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Building blocks (public: the distributed trainer and the evaluation tools reuse them)
# --------------------------------------------------------------------------------------


def build_model(cfg: ModelConfig) -> nn.Module:
    """The backbone described by ``cfg``: :func:`sphereface2.models.build_backbone_from_config`."""
    return build_backbone_from_config(cfg)


def build_training_set(cfg: TrainConfig) -> Any:
    """The training dataset with the paper's transform, plus label noise if configured."""
    dataset = open_training_set(
        cfg.data.train,
        transform=train_transform(cfg.model.input_size),
        skip_corrupt=cfg.data.skip_corrupt,
    )
    if dataset.num_classes is None:
        raise ValueError(f"{cfg.data.train}: cannot tell the number of classes")
    if cfg.data.label_noise.p > 0:
        noise = cfg.data.label_noise
        dataset = NoisyLabelDataset(dataset, noise.p, dataset.num_classes, noise.seed)
    return dataset


#: ``head.init: auto`` draws the full proxy matrix up to this many entries (1 GiB float32).
FULL_INIT_MAX_ENTRIES = 1 << 28


def build_training_head(cfg: TrainConfig, num_classes: int) -> ShardedHead:
    """This process's shard of the configured head, over the default process group (all
    classes without one: then it computes exactly what the plain head does)."""
    init = cfg.head.init
    if init == "auto":
        entries = num_classes * cfg.model.embedding_dim
        init = "full" if entries <= FULL_INIT_MAX_ENTRIES else "shard"
    return build_sharded_head(
        cfg.head.name,
        num_classes,
        cfg.model.embedding_dim,
        None,
        init=init,
        seed=cfg.seed,
        **cfg.head.params,
    )


def per_process_batch(cfg: TrainConfig, world_size: int) -> int:
    """Images per micro-batch on each process: the global batch / (accumulation x world)."""
    parts = cfg.optim.accumulation_steps * world_size
    if cfg.data.batch_size % parts:
        raise ConfigError(
            f"data.batch_size: {cfg.data.batch_size} images per step cannot be split into "
            f"{cfg.optim.accumulation_steps} accumulation step(s) x {world_size} process(es)"
        )
    return cfg.data.batch_size // parts


class _Silent:
    """Log and metrics sink of the ranks other than 0 (rank 0 writes the run folder)."""

    warning = None

    def info(self, message: str) -> None:
        del message

    def log(self, kind: str, iteration: int, values: dict[str, Any]) -> None:
        del kind, iteration, values

    def close(self) -> None:
        pass


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``runtime.amp`` (None for full precision)."""
    if amp == "none":
        return None
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("runtime.amp: fp16 needs a CUDA device; use bf16 or none on the CPU")
    return torch.float16 if amp == "fp16" else torch.bfloat16


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class _StopSignals:
    """SIGINT/SIGTERM set a flag that the loop checks between iterations; a second signal
    gets the default behaviour (immediate KeyboardInterrupt / termination)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        self.received = signal.Signals(signum).name
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


def _describe_diff(old: TrainConfig, new: TrainConfig, keys: list[str]) -> str:
    flat_old, flat_new = flatten(config_to_dict(old)), flatten(config_to_dict(new))
    return "; ".join(f"{k}: {flat_old.get(k)!r} -> {flat_new.get(k)!r}" for k in keys)


# --------------------------------------------------------------------------------------
# The training run
# --------------------------------------------------------------------------------------


class _Run:
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
        self.log: TextLog | _Silent = _Silent()  # rank 0's log, once the run has started
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
        self.sharded_param_ids = self._sharded_param_ids()
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
        if checkpoint is not None:
            self._load_state(checkpoint, checkpoint_path)
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

    def _sharded_param_ids(self) -> dict[str, int]:
        """Optimiser state-dict ids of the head's sharded parameters (ids count the
        parameters across param groups in order, as ``Optimizer.state_dict`` does)."""
        params = [param for group in self.optimizer.param_groups for param in group["params"]]
        ids = {id(param): index for index, param in enumerate(params)}
        names = dict(self.head.named_parameters())
        return {key: ids[id(names[key])] for key in self.head.sharded_keys}

    # ----- checkpoints ----------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(the main checkpoint dict, this rank's shard dict or None with one process)."""
        ids = self.sharded_param_ids
        head = self.head.state_dict()
        optimizer = self.optimizer.state_dict()
        shard = None
        rng = capture_rng_state()
        if self.par.distributed:
            rows = {key: head.pop(key) for key in self.head.sharded_keys}
            optimizer, optimizer_rows = split_optimizer_state(optimizer, ids)
            shard = shard_payload(
                self.iteration,
                self.par.rank,
                self.par.world_size,
                (self.head.class_start, self.head.class_end),
                rows,
                optimizer_rows,
                rng,
            )
        main = {
            "config": config_to_dict(self.cfg),
            "backbone": self.backbone.state_dict(),
            "head": head,
            "optimizer": optimizer,
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "data": {
                **self.batches.state_dict(),
                "world_size": self.par.world_size,
                "dataset_size": len(self.dataset),
                "num_classes": self.num_classes,
            },
            "sharding": {
                "world_size": self.par.world_size,
                "num_classes": self.num_classes,
                "keys": ids,
            },
        }
        return main, shard

    def _load_state(self, ckpt: dict[str, Any], path: Path | None) -> None:
        data = ckpt["data"]
        if (data["dataset_size"], data["num_classes"]) != (len(self.dataset), self.num_classes):
            raise ResumeError(
                f"{path}: the checkpoint was trained on {data['dataset_size']} images of "
                f"{data['num_classes']} classes but {self.cfg.data.train} has "
                f"{len(self.dataset)} images of {self.num_classes} classes"
            )
        saved_world = int(sharding_record(ckpt)["world_size"])
        rng = shard_rng(path, ckpt, self.par.rank) if saved_world == self.par.world_size else None
        ckpt = load_rows(
            path, ckpt, self.head.class_start, self.head.class_end, self.sharded_param_ids
        )
        for name, module in (("backbone", self.backbone), ("head", self.head)):
            try:
                module.load_state_dict(ckpt[name])
            except RuntimeError as err:
                first = str(err).strip().splitlines()
                raise ResumeError(
                    f"{path}: its {name} weights do not fit the configured {name}: "
                    f"{' '.join(line.strip() for line in first[:3])}"
                ) from None
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.batches.load_state_dict(self._data_position(data, path))
        if rng is None:
            self.notes.append(
                f"resuming a {saved_world}-process checkpoint with {self.par.world_size} "
                "process(es): same weights, optimiser state and data order; the random "
                "streams continue from rank 0's, so the run is not bit-identical to an "
                "uninterrupted one"
            )
            rng = ckpt["rng"]
        restore_rng_state(rng)

    def _data_position(self, data: dict[str, Any], path: Path | None) -> dict[str, int]:
        """The saved data position in this world's terms: every rank consumed the same
        number of samples, interleaved, so the global position is ``position x world``."""
        saved_world = int(data.get("world_size", 1))
        consumed = int(data["position"]) * saved_world
        if consumed % self.par.world_size:
            raise ResumeError(
                f"{path}: {consumed} samples of epoch {data['epoch']} were consumed, which "
                f"{self.par.world_size} processes cannot split evenly"
            )
        return {"epoch": int(data["epoch"]), "position": consumed // self.par.world_size}

    def save(self) -> Path:
        """Write a checkpoint of the current iteration (once per iteration). With several
        processes every rank must call this: each writes its shard, then rank 0 the main
        file that commits the checkpoint (see :mod:`sphereface2.models.sharded_checkpoint`)."""
        if self.last_saved_iteration != self.iteration:
            main, shard = self._state()
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

    # ----- one optimiser step -----------------------------------------------------------
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
                with _autocast(self.device, self.amp_dtype):
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


def _find_resume_checkpoint(resume: str | Path | None, run: Path) -> Path | None:
    if resume is None:
        return None
    if str(resume) == "auto":
        return latest_checkpoint(run)
    path = Path(resume)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"{path}: no checkpoints to resume from")
        return found
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    return path


def _checkpoint_config(ckpt: dict[str, Any], path: Path) -> TrainConfig:
    try:
        return config_from_dict(ckpt.get("config"), f"{path} (its stored config)")
    except ConfigError as err:
        raise ResumeError(f"cannot resume: {err}") from None


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: str | Path | None = None,
    device: str | torch.device | None = None,
    stop_after: int | None = None,
    echo: bool = True,
) -> TrainResult:
    """Train ``cfg`` into the run folder ``out_dir`` (see :mod:`sphereface2.models.run_folder`).

    Args:
        cfg: the validated config.
        out_dir: the run folder; a fresh run refuses one that already has checkpoints.
        resume: ``"auto"`` (continue from the newest checkpoint in ``out_dir`` if there is
            one, else start fresh), a checkpoint file, or a run folder to take the newest
            checkpoint of. The config may differ from the checkpoint's only in keys listed
            in :data:`sphereface2.config.RESUME_SAFE_KEYS`; other differences are refused.
            A resumed run takes every weight from its checkpoint: ``model.init`` (the
            pretrained backbone a fresh run starts from) is not read then.
        device: overrides ``cfg.runtime.device`` (``cpu``, ``cuda``, ``cuda:1``, ``auto``).
        stop_after: stop with a checkpoint once this many iterations are done (to split a
            run across time-limited jobs); the schedule still spans ``schedule.iterations``.
        echo: also print the log lines to stdout.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (the last checkpoint is kept).
        ResumeError: the checkpoint does not fit this config or data.
        KeyboardInterrupt: after SIGINT/SIGTERM, once a checkpoint has been written.
    """
    out_dir = Path(out_dir)
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"stop_after must be >= 1, got {stop_after}")
    dev = resolve_device(device, cfg.runtime.device)
    with distributed_session(dev) as ctx:  # a single process creates nothing
        parallel = Parallel.from_context(ctx)
        per_process_batch(cfg, parallel.world_size)  # fail before touching the run folder
        return _train_in_folder(cfg, out_dir, resume, stop_after, echo, parallel)


def _prepare(
    cfg: TrainConfig, out_dir: Path, resume: str | Path | None, parallel: Parallel
) -> tuple[_Run, Path | None]:
    """Every start-up check, reading files only: the checkpoint fits the config, the data
    and validation sets open, the model builds and the saved state loads into it."""
    ckpt_path = _find_resume_checkpoint(resume, out_dir)
    # the head's shard files stay on disk: each rank reads only its rows later
    checkpoint = load_checkpoint(ckpt_path, merge_shards=False) if ckpt_path else None
    if checkpoint is not None:
        blocking = resume_blocking_diff(_checkpoint_config(checkpoint, ckpt_path), cfg)
        if blocking:
            old = _checkpoint_config(checkpoint, ckpt_path)
            raise ResumeError(
                f"cannot resume {ckpt_path}: the config differs in {', '.join(blocking)} "
                f"({_describe_diff(old, cfg, blocking)}); only logging, checkpointing, "
                "validation, worker and device settings may change on resume"
            )
    run_folder = open_run_folder(out_dir, resuming=ckpt_path is not None, create=False)
    return _Run(cfg, run_folder, parallel, checkpoint, ckpt_path), ckpt_path


def _open_records(state: _Run, echo: bool) -> tuple[TextLog | _Silent, MetricsLogger | _Silent]:
    """Rank 0 writes the run folder's config, log, metrics, label-noise record and
    identity names."""
    if not state.par.is_main:
        return _Silent(), _Silent()
    run, cfg = state.run, state.cfg
    run.create()
    truncate_jsonl(run.metrics, state.start_iteration)
    save_config(cfg, run.config)
    if label_noise_summary(state.dataset, run.label_noise) is not None:
        write_label_noise(state.dataset, run.label_noise)
    names = class_names_of(state.dataset)
    if names is not None:
        write_class_names(names, run.classes)
    log = TextLog(run.log, echo=echo)
    metrics = MetricsLogger(run.metrics, run.tensorboard if cfg.runtime.tensorboard else None)
    return log, metrics


def _train_in_folder(
    cfg: TrainConfig,
    out_dir: Path,
    resume: str | Path | None,
    stop_after: int | None,
    echo: bool,
    parallel: Parallel,
) -> TrainResult:
    """Rank 0 claims the run folder (its lock) before anything is read; every rank then
    runs the same read-only checks (so they fail alike), and only once all passed does rank
    0 write into the folder. A refused start leaves the folder as it was, and removes it
    if this call created it."""
    with contextlib.ExitStack() as stack:
        claim = parallel.on_every_rank(
            lambda: stack.enter_context(RunFolderClaim(out_dir)) if parallel.is_main else None
        )
        state, ckpt_path = parallel.on_every_rank(lambda: _prepare(cfg, out_dir, resume, parallel))
        log, metrics = parallel.on_every_rank(lambda: _open_records(state, echo))
        stack.callback(log.close)
        stack.callback(metrics.close)
        if claim is not None:
            claim.keep()
        state.log = log
        state.start()
        return _train(state, ckpt_path, stop_after, log, metrics)


def _train(
    state: _Run,
    ckpt_path: Path | None,
    stop_after: int | None,
    log: TextLog | _Silent,
    metrics: MetricsLogger | _Silent,
) -> TrainResult:
    cfg, parallel, run_folder = state.cfg, state.par, state.run
    total = cfg.schedule.iterations
    if metrics.warning:
        log.info(metrics.warning)
    if ckpt_path is not None:
        log.info(f"resuming {run_folder.root} from {ckpt_path} (iteration {state.iteration})")
    else:
        log.info(f"starting {cfg.name} in {run_folder.root}")
    for note in state.notes:
        log.info(note)
    device = parallel.device
    processes = ""
    if parallel.distributed:
        processes = (
            f" x {parallel.world_size} processes (classes per process: "
            f"{state.head.num_local_classes} on rank 0)"
        )
    log.info(
        f"device {device}{processes} | {len(state.dataset)} images, "
        f"{state.num_classes} classes | batch {cfg.data.batch_size} "
        f"({state.accumulation} x {parallel.world_size} x {state.micro_batch}) | "
        f"{state.batches.batches_per_epoch * state.accumulation} micro-batches per epoch | "
        f"{cfg.model.backbone} + {cfg.head.name} | amp {cfg.runtime.amp}"
    )
    noise = label_noise_summary(state.dataset, run_folder.label_noise)
    if noise is not None:
        log.info(describe_label_noise(noise))
    end = total if stop_after is None else min(total, stop_after)
    started = time.perf_counter()
    window_start, window_iters, window_loss = time.perf_counter(), 0, 0.0
    last_loss = float("nan")
    val_results: dict[str, float] = {}
    status = "completed"
    try:
        with _StopSignals() as stop:
            while state.iteration < end:
                if parallel.any(stop.received is not None):  # every rank stops at one step
                    path = state.save()
                    log.info(
                        f"{stop.received or 'a stop signal on another rank'} received: stopped "
                        f"at iteration {state.iteration}; "
                        f"checkpoint {path}; continue with --resume auto"
                    )
                    _draw_curves(state, log)
                    _write_summary(state, "interrupted", last_loss, started, val_results, None, [])
                    raise KeyboardInterrupt(f"training interrupted at iteration {state.iteration}")
                want_stats = (state.iteration + 1) % cfg.runtime.log_every == 0
                last_loss, stats = state.step(want_stats)
                for message in state.batches.pop_new_skipped():
                    log.info(f"skipped an unreadable sample (data.skip_corrupt): {message}")
                window_iters += 1
                window_loss += last_loss
                it = state.iteration
                if it % cfg.runtime.log_every == 0 or it == end:
                    now = time.perf_counter()
                    seconds = max(now - window_start, 1e-9)
                    images_per_s = window_iters * cfg.data.batch_size / seconds
                    eta = (end - it) * seconds / window_iters
                    lr = state.optimizer.param_groups[0]["lr"]
                    mean_loss = window_loss / window_iters
                    log.info(
                        progress_line(
                            it, total, state.batches.epoch, mean_loss, lr, images_per_s, eta, stats
                        )
                    )
                    metrics.log(
                        "train",
                        it,
                        {
                            "loss": mean_loss,
                            "lr": lr,
                            "images_per_s": images_per_s,
                            "epoch": state.batches.epoch,
                            **stats,
                        },
                    )
                    window_start, window_iters, window_loss = now, 0, 0.0
                if state.val_sets and (it % cfg.data.val_every == 0 or it == total):
                    if parallel.is_main:  # the backbone is the same on every rank
                        val_results = state.validate()
                        metrics.log("val", it, val_results)
                        log.info(f"validation at iteration {it}: " + _format_val(val_results))
                    parallel.barrier()
                if it % cfg.runtime.checkpoint_every == 0 or it == end:
                    state.save()
        state.batches.close()
        if state.iteration < total:
            status = "stopped"
            path = state.save()
            log.info(f"stopped after iteration {state.iteration} as asked; checkpoint {path}")
            return _finish(state, status, last_loss, started, val_results, None, [], {}, log)

        model_path, averaged, val_avg = None, [], {}
        if parallel.is_main:
            model_path, averaged, val_avg = _write_model_file(state, log)
        parallel.barrier()
    except Exception as err:
        _draw_curves(state, log)
        raise record_failure(
            state,
            err,
            log.info,
            lambda extra: _write_summary(
                state, "failed", float("nan"), started, val_results, None, [], extra=extra
            ),
        ) from err
    return _finish(
        state, status, last_loss, started, val_results, model_path, averaged, val_avg, log
    )


def _draw_curves(state: _Run, log: TextLog | _Silent) -> None:
    """Rank 0 draws curves.png from metrics.jsonl; a drawing problem never fails a run."""
    if not state.par.is_main:
        return
    try:
        plot_training_curves(state.run.metrics, state.run.curves)
    except Exception as err:
        log.info(f"could not draw {state.run.curves}: {err}")


def _format_val(results: dict[str, float]) -> str:
    accs = {k[: -len("_acc")]: v for k, v in results.items() if k.endswith("_acc")}
    return ", ".join(
        f"{name} {100 * acc:.2f}% (+-{100 * results[name + '_acc_std']:.2f})"
        for name, acc in accs.items()
    )


def _write_model_file(
    state: _Run, log: TextLog | _Silent
) -> tuple[Path, list[int], dict[str, float]]:
    """Average the last ``runtime.average_last`` checkpoints into ``model.pt``."""
    cfg = state.cfg
    found = list_checkpoints(state.run.checkpoints)[-cfg.runtime.average_last :]
    iterations = [it for it, _ in found]
    averaged = average_checkpoints([path for _, path in found])
    payload = {
        "format": MODEL_FORMAT,
        "version": FORMAT_VERSION,
        "config": config_to_dict(cfg),
        "iteration": state.iteration,
        "averaged_iterations": iterations,
        "num_classes": state.num_classes,
        "backbone": averaged["backbone"],
        "head": averaged["head"],
    }
    atomic_save(payload, state.run.model)
    val_avg: dict[str, float] = {}
    if len(iterations) > 1:
        log.info(f"model.pt averages the checkpoints of iterations {iterations}")
        if state.val_sets:
            live = {k: v.detach().clone() for k, v in state.backbone.state_dict().items()}
            state.backbone.load_state_dict(averaged["backbone"])
            val_avg = state.validate()
            state.backbone.load_state_dict(live)
            log.info("validation of the averaged model: " + _format_val(val_avg))
    return state.run.model, iterations, val_avg


def _write_summary(
    state: _Run,
    status: str,
    last_loss: float,
    started: float,
    val: dict[str, float],
    model_path: Path | None,
    averaged: list[int],
    val_averaged: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """summary.json (rank 0); ``extra`` adds keys (a failure's iteration and reason)."""
    elapsed = time.perf_counter() - started
    done = state.iteration - state.start_iteration
    summary = {
        "name": state.cfg.name,
        "status": status,
        "iteration": state.iteration,
        "total_iterations": state.cfg.schedule.iterations,
        "resumed_from_iteration": state.start_iteration,
        "epoch": state.batches.epoch,
        "final_loss": last_loss if math.isfinite(last_loss) else None,
        "elapsed_s": round(elapsed, 3),
        "images_per_s": round(done * state.cfg.data.batch_size / elapsed, 3) if elapsed else None,
        "device": str(state.device),
        "processes": state.par.world_size,
        "num_classes": state.num_classes,
        "num_images": len(state.dataset),
        "last_checkpoint": str(state.last_checkpoint) if state.last_checkpoint else None,
        "model": str(model_path) if model_path else None,
        "averaged_iterations": averaged,
        "val": val,
        "val_averaged": val_averaged or {},
        "label_noise": label_noise_summary(state.dataset, state.run.label_noise),
        "skipped_samples": len(state.batches.skipped_samples),
        **(extra or {}),
        "files": {
            name: str(path)
            for name, path in state.run.files().items()
            if path.exists() or name == "summary"  # about to be written
        },
    }
    if state.par.is_main:
        state.run.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _finish(
    state: _Run,
    status: str,
    last_loss: float,
    started: float,
    val: dict[str, float],
    model_path: Path | None,
    averaged: list[int],
    val_averaged: dict[str, float],
    log: TextLog | _Silent,
) -> TrainResult:
    _draw_curves(state, log)
    summary = _write_summary(
        state, status, last_loss, started, val, model_path, averaged, val_averaged
    )
    lines = [
        f"{status}: {state.cfg.name} at iteration {state.iteration}/{state.cfg.schedule.iterations}"
        f" in {format_duration(summary['elapsed_s'])} ({summary['images_per_s']} img/s)",
        f"  final loss {last_loss:.4f}; last checkpoint {state.last_checkpoint}",
    ]
    if model_path:
        lines.append(f"  evaluation weights {model_path} (iterations {averaged})")
    if val:
        lines.append(f"  validation: {_format_val(val)}")
    if val_averaged:
        lines.append(f"  averaged model: {_format_val(val_averaged)}")
    if summary["skipped_samples"]:
        lines.append(f"  skipped {summary['skipped_samples']} unreadable sample(s)")
    lines.append(f"  curves {state.run.curves}; summary {state.run.summary}")
    log.info("\n".join(lines))
    return TrainResult(
        run_dir=state.run.root,
        iteration=state.iteration,
        total_iterations=state.cfg.schedule.iterations,
        status=status,
        final_loss=last_loss,
        images_per_second=summary["images_per_s"] or 0.0,
        elapsed_s=summary["elapsed_s"],
        last_checkpoint=state.last_checkpoint,
        model_path=model_path,
        averaged_iterations=averaged,
        val=val,
        val_averaged=val_averaged,
    )
