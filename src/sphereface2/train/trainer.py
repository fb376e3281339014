"""Single-process training: ``train(cfg, out_dir)`` runs a whole config and resumes exactly.

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

Failures: a non-finite loss stops the run before the bad step is applied, naming the
iteration; the last checkpoint stays as it was. Ctrl-C (SIGINT) or SIGTERM finishes the
current iteration, writes a checkpoint and raises KeyboardInterrupt.
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

from sphereface2.backbones import build_backbone
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
from sphereface2.heads import build_head
from sphereface2.train.checkpoint import (
    FORMAT_VERSION,
    MODEL_FORMAT,
    atomic_save,
    average_checkpoints,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from sphereface2.train.data_loading import TrainBatches
from sphereface2.train.logging import (
    MetricsLogger,
    TextLog,
    format_duration,
    progress_line,
    truncate_jsonl,
)
from sphereface2.train.optim import LRSchedule, build_sgd, set_lr
from sphereface2.train.rng import capture_rng_state, restore_rng_state, seed_everything
from sphereface2.train.run_folder import RunFolder, open_run_folder
from sphereface2.train.validation import load_val_sets, validate


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the iteration and the last
    good checkpoint."""


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


def resolve_device(requested: str | torch.device | None, configured: str = "auto") -> torch.device:
    """The device to train on: ``requested`` if given, else the config's (``auto`` picks
    CUDA when available). Asking for CUDA without a GPU is an error, not a fallback."""
    choice = str(requested) if requested is not None else configured
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {choice!r} was requested but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {choice!r}; use cpu, cuda or auto")
    return device


def build_model(cfg: ModelConfig) -> nn.Module:
    """The backbone described by ``cfg`` (via the registry)."""
    return build_backbone(
        cfg.backbone, embedding_dim=cfg.embedding_dim, input_size=cfg.input_size, **cfg.options
    )


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
        device: torch.device,
        checkpoint: dict[str, Any] | None,
        checkpoint_path: Path | None,
    ) -> None:
        self.cfg = cfg
        self.run = run
        self.device = device
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
        self.backbone = build_model(cfg.model).to(device)
        self.head = build_head(
            cfg.head.name,
            num_classes=self.num_classes,
            embedding_dim=cfg.model.embedding_dim,
            **cfg.head.params,
        ).to(device)
        if cfg.runtime.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        self.params = [p for m in (self.backbone, self.head) for p in m.parameters()]
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
        self.micro_batch = cfg.data.batch_size // self.accumulation
        self.batches = TrainBatches(
            self.dataset,
            self.micro_batch,
            seed=cfg.seed,
            num_workers=cfg.data.num_workers,
            pin_memory=device.type == "cuda",
        )
        if checkpoint is not None:
            self._load_state(checkpoint, checkpoint_path)

    # ----- checkpoints ----------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "config": config_to_dict(self.cfg),
            "backbone": self.backbone.state_dict(),
            "head": self.head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "data": {
                **self.batches.state_dict(),
                "dataset_size": len(self.dataset),
                "num_classes": self.num_classes,
            },
        }

    def _load_state(self, ckpt: dict[str, Any], path: Path | None) -> None:
        data = ckpt["data"]
        if (data["dataset_size"], data["num_classes"]) != (len(self.dataset), self.num_classes):
            raise ResumeError(
                f"{path}: the checkpoint was trained on {data['dataset_size']} images of "
                f"{data['num_classes']} classes but {self.cfg.data.train} has "
                f"{len(self.dataset)} images of {self.num_classes} classes"
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
        self.batches.load_state_dict(data)
        restore_rng_state(ckpt["rng"])

    def save(self) -> Path:
        """Write a checkpoint of the current iteration (once per iteration)."""
        if self.last_saved_iteration != self.iteration:
            self.last_checkpoint = save_checkpoint(
                self._state(), self.run.checkpoints, self.iteration, self.cfg.runtime.keep_last
            )
            self.last_saved_iteration = self.iteration
        assert self.last_checkpoint is not None
        return self.last_checkpoint

    # ----- one optimiser step -----------------------------------------------------------
    def step(self, want_stats: bool) -> tuple[float, dict[str, float]]:
        """One iteration; returns (mean loss over the micro-batches, head stats)."""
        set_lr(self.optimizer, self.schedule(self.iteration))
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        stats: dict[str, float] = {}
        for micro in range(self.accumulation):
            images, labels = next(self.batches)
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            if self.cfg.runtime.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            last = micro == self.accumulation - 1
            with _autocast(self.device, self.amp_dtype):
                embeddings = self.backbone(images)
                if want_stats and last:
                    loss, raw_stats = self.head(embeddings, labels, return_stats=True)
                    stats = {k: float(v) for k, v in raw_stats.items()}
                else:
                    loss = self.head(embeddings, labels)
            self.scaler.scale(loss / self.accumulation).backward()
            total += loss.detach().float()
        loss_value = float(total) / self.accumulation
        if not math.isfinite(loss_value):
            where = self.last_checkpoint or "none was written yet"
            raise NonFiniteLossError(
                f"non-finite loss ({loss_value}) at iteration {self.iteration + 1}; the step "
                f"was not applied. Last good checkpoint: {where}. Lower optim.lr, set "
                "optim.max_grad_norm, or check the data"
            )
        if self.cfg.optim.max_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.max_grad_norm)
            stats["grad_norm"] = float(norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.iteration += 1
        return loss_value, stats

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
    """Train ``cfg`` into the run folder ``out_dir`` (see :mod:`sphereface2.train.run_folder`).

    Args:
        cfg: the validated config.
        out_dir: the run folder; a fresh run refuses one that already has checkpoints.
        resume: ``"auto"`` (continue from the newest checkpoint in ``out_dir`` if there is
            one, else start fresh), a checkpoint file, or a run folder to take the newest
            checkpoint of. The config may differ from the checkpoint's only in keys listed
            in :data:`sphereface2.config.RESUME_SAFE_KEYS`; other differences are refused.
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
    ckpt_path = _find_resume_checkpoint(resume, out_dir)
    checkpoint = load_checkpoint(ckpt_path) if ckpt_path is not None else None
    if checkpoint is not None:
        blocking = resume_blocking_diff(_checkpoint_config(checkpoint, ckpt_path), cfg)
        if blocking:
            old = _checkpoint_config(checkpoint, ckpt_path)
            raise ResumeError(
                f"cannot resume {ckpt_path}: the config differs in {', '.join(blocking)} "
                f"({_describe_diff(old, cfg, blocking)}); only logging, checkpointing, "
                "validation, worker and device settings may change on resume"
            )
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"stop_after must be >= 1, got {stop_after}")
    run_folder = open_run_folder(out_dir, resuming=ckpt_path is not None)
    dev = resolve_device(device, cfg.runtime.device)
    start = int(checkpoint["iteration"]) if checkpoint else 0
    truncate_jsonl(run_folder.metrics, start)
    save_config(cfg, run_folder.config)
    log = TextLog(run_folder.log, echo=echo)
    metrics = MetricsLogger(
        run_folder.metrics, run_folder.tensorboard if cfg.runtime.tensorboard else None
    )
    try:
        return _train(cfg, run_folder, dev, checkpoint, ckpt_path, stop_after, log, metrics)
    finally:
        metrics.close()
        log.close()


def _train(
    cfg: TrainConfig,
    run_folder: RunFolder,
    device: torch.device,
    checkpoint: dict[str, Any] | None,
    ckpt_path: Path | None,
    stop_after: int | None,
    log: TextLog,
    metrics: MetricsLogger,
) -> TrainResult:
    total = cfg.schedule.iterations
    if metrics.warning:
        log.info(metrics.warning)
    if checkpoint is not None:
        log.info(
            f"resuming {run_folder.root} from {ckpt_path} (iteration {checkpoint['iteration']})"
        )
    else:
        log.info(f"starting {cfg.name} in {run_folder.root}")
    state = _Run(cfg, run_folder, device, checkpoint, ckpt_path)
    del checkpoint  # the weights now live in the modules; free the CPU copy
    log.info(
        f"device {device} | {len(state.dataset)} images, {state.num_classes} classes | "
        f"batch {cfg.data.batch_size} ({state.accumulation} x {state.micro_batch}) | "
        f"{state.batches.batches_per_epoch * state.accumulation} micro-batches per epoch | "
        f"{cfg.model.backbone} + {cfg.head.name} | amp {cfg.runtime.amp}"
    )
    end = total if stop_after is None else min(total, stop_after)
    started = time.perf_counter()
    window_start, window_iters, window_loss = time.perf_counter(), 0, 0.0
    last_loss = float("nan")
    val_results: dict[str, float] = {}
    status = "completed"
    with _StopSignals() as stop:
        while state.iteration < end:
            if stop.received:
                path = state.save()
                log.info(
                    f"{stop.received} received: stopped at iteration {state.iteration}; "
                    f"checkpoint {path}; continue with --resume auto"
                )
                _write_summary(state, "interrupted", last_loss, started, val_results, None, [])
                raise KeyboardInterrupt(f"training interrupted at iteration {state.iteration}")
            want_stats = (state.iteration + 1) % cfg.runtime.log_every == 0
            try:
                last_loss, stats = state.step(want_stats)
            except NonFiniteLossError as err:
                log.info(str(err))
                _write_summary(state, "failed", float("nan"), started, val_results, None, [])
                raise
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
                val_results = state.validate()
                metrics.log("val", it, val_results)
                log.info(f"validation at iteration {it}: " + _format_val(val_results))
            if it % cfg.runtime.checkpoint_every == 0 or it == end:
                state.save()
    state.batches.close()
    if state.iteration < total:
        status = "stopped"
        path = state.save()
        log.info(f"stopped after iteration {state.iteration} as asked; checkpoint {path}")
        return _finish(state, status, last_loss, started, val_results, None, [], {}, log)

    model_path, averaged, val_avg = _write_model_file(state, log)
    return _finish(
        state, status, last_loss, started, val_results, model_path, averaged, val_avg, log
    )


def _format_val(results: dict[str, float]) -> str:
    accs = {k[: -len("_acc")]: v for k, v in results.items() if k.endswith("_acc")}
    return ", ".join(
        f"{name} {100 * acc:.2f}% (+-{100 * results[name + '_acc_std']:.2f})"
        for name, acc in accs.items()
    )


def _write_model_file(state: _Run, log: TextLog) -> tuple[Path, list[int], dict[str, float]]:
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
) -> dict[str, Any]:
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
        "num_classes": state.num_classes,
        "num_images": len(state.dataset),
        "last_checkpoint": str(state.last_checkpoint) if state.last_checkpoint else None,
        "model": str(model_path) if model_path else None,
        "averaged_iterations": averaged,
        "val": val,
        "val_averaged": val_averaged or {},
    }
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
    log: TextLog,
) -> TrainResult:
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
    lines.append(f"  summary {state.run.summary}")
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
