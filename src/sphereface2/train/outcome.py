"""What a run leaves when it ends: ``model.pt`` (the averaged weights), ``summary.json``,
``curves.png``, the closing log lines and the :class:`TrainResult` returned to the caller."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sphereface2.models.checkpoint import atomic_save, average_checkpoints, list_checkpoints
from sphereface2.models.training_state import model_file_payload
from sphereface2.train.label_noise_record import label_noise_summary
from sphereface2.train.logging import SilentLog, TextLog, format_duration
from sphereface2.train.logging.curves import plot_training_curves
from sphereface2.train.run import TrainingRun


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


def draw_curves(state: TrainingRun, log: TextLog | SilentLog) -> None:
    """Rank 0 draws curves.png from metrics.jsonl; a drawing problem never fails a run."""
    if not state.par.is_main:
        return
    try:
        plot_training_curves(state.run.metrics, state.run.curves)
    except Exception as err:
        log.info(f"could not draw {state.run.curves}: {err}")


def format_val(results: dict[str, float]) -> str:
    """ "lfw 99.10% (+-0.40), ..." from validation results."""
    accs = {k[: -len("_acc")]: v for k, v in results.items() if k.endswith("_acc")}
    return ", ".join(
        f"{name} {100 * acc:.2f}% (+-{100 * results[name + '_acc_std']:.2f})"
        for name, acc in accs.items()
    )


def write_model_file(
    state: TrainingRun, log: TextLog | SilentLog
) -> tuple[Path, list[int], dict[str, float]]:
    """Average the last ``runtime.average_last`` checkpoints into ``model.pt``."""
    cfg = state.cfg
    found = list_checkpoints(state.run.checkpoints)[-cfg.runtime.average_last :]
    iterations = [it for it, _ in found]
    averaged = average_checkpoints([path for _, path in found])
    payload = model_file_payload(cfg, state.iteration, iterations, state.num_classes, averaged)
    atomic_save(payload, state.run.model)
    val_avg: dict[str, float] = {}
    if len(iterations) > 1:
        log.info(f"model.pt averages the checkpoints of iterations {iterations}")
        if state.val_sets:
            live = {k: v.detach().clone() for k, v in state.backbone.state_dict().items()}
            state.backbone.load_state_dict(averaged["backbone"])
            val_avg = state.validate()
            state.backbone.load_state_dict(live)
            log.info("validation of the averaged model: " + format_val(val_avg))
    return state.run.model, iterations, val_avg


def write_summary(
    state: TrainingRun,
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


def finish(
    state: TrainingRun,
    status: str,
    last_loss: float,
    started: float,
    val: dict[str, float],
    model_path: Path | None,
    averaged: list[int],
    val_averaged: dict[str, float],
    log: TextLog | SilentLog,
) -> TrainResult:
    """Curves, summary and the closing log lines of a completed or stopped run."""
    draw_curves(state, log)
    summary = write_summary(
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
        lines.append(f"  validation: {format_val(val)}")
    if val_averaged:
        lines.append(f"  averaged model: {format_val(val_averaged)}")
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
