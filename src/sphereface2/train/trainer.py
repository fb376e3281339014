"""Training: ``train(cfg, out_dir)`` runs a whole config and resumes exactly.

    >>> from sphereface2.config import load_config
    >>> from sphereface2.train.trainer import train
    >>> result = train(load_config("configs/demo.yaml"), "runs/demo", resume="auto")

The trainer asks the registries for the backbone and the head (it never imports a concrete
model; :mod:`sphereface2.train.building`), reads the training set through
:func:`sphereface2.data.training_sets.open_training_set` and optimises with SGD under an
iteration-based schedule (:mod:`sphereface2.train.run` holds a run's objects and its step;
this module the start-up checks and the loop; :mod:`sphereface2.train.outcome` what a run
leaves behind). One *iteration* is one optimiser
step over ``data.batch_size`` images (split into ``optim.accumulation_steps`` micro-batches).

Exact resume: a checkpoint holds the weights, the optimiser (momentum buffers), the
gradient scaler, every RNG state and the data position (epoch, samples consumed), laid out
by :class:`sphereface2.models.training_state.TrainingState`; the
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
import time
from pathlib import Path
from typing import Any

import torch

from sphereface2.config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    flatten,
    resume_blocking_diff,
    save_config,
)
from sphereface2.distributed.process_group import distributed_session
from sphereface2.models.checkpoint import latest_checkpoint, load_checkpoint
from sphereface2.models.device import resolve_device
from sphereface2.models.run_folder import open_run_folder
from sphereface2.models.training_state import ResumeError
from sphereface2.train.building import (
    FULL_INIT_MAX_ENTRIES,
    autocast_dtype,
    build_model,
    build_training_head,
    build_training_set,
    per_process_batch,
)
from sphereface2.train.classes_record import class_names_of, write_class_names
from sphereface2.train.failure import NonFiniteLossError, record_failure
from sphereface2.train.label_noise_record import (
    describe_label_noise,
    label_noise_summary,
    write_label_noise,
)
from sphereface2.train.logging import (
    MetricsLogger,
    SilentLog,
    TextLog,
    progress_line,
    truncate_jsonl,
)
from sphereface2.train.outcome import (
    TrainResult,
    draw_curves,
    finish,
    format_val,
    write_model_file,
    write_summary,
)
from sphereface2.train.parallel import Parallel
from sphereface2.train.run import TrainingRun
from sphereface2.train.run_lock import RunFolderClaim
from sphereface2.train.stop_signals import StopSignals

# The builders and result types that callers import from here (their old home).
__all__ = [
    "FULL_INIT_MAX_ENTRIES",
    "NonFiniteLossError",
    "ResumeError",
    "TrainResult",
    "autocast_dtype",
    "build_model",
    "build_training_head",
    "build_training_set",
    "per_process_batch",
    "train",
]


def _describe_diff(old: TrainConfig, new: TrainConfig, keys: list[str]) -> str:
    flat_old, flat_new = flatten(config_to_dict(old)), flatten(config_to_dict(new))
    return "; ".join(f"{k}: {flat_old.get(k)!r} -> {flat_new.get(k)!r}" for k in keys)


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
) -> tuple[TrainingRun, Path | None]:
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
    return TrainingRun(cfg, run_folder, parallel, checkpoint, ckpt_path), ckpt_path


def _open_records(
    state: TrainingRun, echo: bool
) -> tuple[TextLog | SilentLog, MetricsLogger | SilentLog]:
    """Rank 0 writes the run folder's config, log, metrics, label-noise record and
    identity names."""
    if not state.par.is_main:
        return SilentLog(), SilentLog()
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
    state: TrainingRun,
    ckpt_path: Path | None,
    stop_after: int | None,
    log: TextLog | SilentLog,
    metrics: MetricsLogger | SilentLog,
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
        with StopSignals() as stop:
            while state.iteration < end:
                if parallel.any(stop.received is not None):  # every rank stops at one step
                    path = state.save()
                    log.info(
                        f"{stop.received or 'a stop signal on another rank'} received: stopped "
                        f"at iteration {state.iteration}; "
                        f"checkpoint {path}; continue with --resume auto"
                    )
                    draw_curves(state, log)
                    write_summary(state, "interrupted", last_loss, started, val_results, None, [])
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
                        log.info(f"validation at iteration {it}: " + format_val(val_results))
                    parallel.barrier()
                if it % cfg.runtime.checkpoint_every == 0 or it == end:
                    state.save()
        state.batches.close()
        if state.iteration < total:
            status = "stopped"
            path = state.save()
            log.info(f"stopped after iteration {state.iteration} as asked; checkpoint {path}")
            return finish(state, status, last_loss, started, val_results, None, [], {}, log)

        model_path, averaged, val_avg = None, [], {}
        if parallel.is_main:
            model_path, averaged, val_avg = write_model_file(state, log)
        parallel.barrier()
    except Exception as err:
        draw_curves(state, log)
        raise record_failure(
            state,
            err,
            log.info,
            lambda extra: write_summary(
                state, "failed", float("nan"), started, val_results, None, [], extra=extra
            ),
        ) from err
    return finish(
        state, status, last_loss, started, val_results, model_path, averaged, val_avg, log
    )
