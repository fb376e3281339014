"""What a run leaves behind when it fails mid-run, and the advice its error gives.

A failure inside the training loop (an unreadable record, a label out of range, a
non-finite loss or embedding, a checkpoint that cannot be written) must not vanish with
the traceback: the error line is appended to ``log.txt``; ``summary.json`` gets status
``failed``, the iteration and the reason; and when the last good state is intact an
emergency checkpoint of it is written, so that ``--resume auto`` continues from there.

*Intact* (decided by the trainer, see ``TrainingRun.restore_good_state`` in
:mod:`sphereface2.train.run`): the optimiser step of the failing iteration had not
begun, the data position and RNG streams can be put back to where that iteration
started, no BatchNorm-like buffer took the failing batch, and every weight, buffer and
optimiser state is finite (after a non-finite update the last regular checkpoint is the
good one). With several processes only the failures that every rank raises alike
(non-finite values, agreed over all ranks) write one: a
checkpoint takes every rank, and a rank that failed alone cannot call the others in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from sphereface2.config import TrainConfig
from sphereface2.models.checkpoint import CheckpointWriteError


class NonFiniteLossError(RuntimeError):
    """The loss or the embeddings became NaN or infinite; the message names the iteration
    and the last good checkpoint."""


class TrainingError(RuntimeError):
    """A run failed mid-way; the message names the iteration, the reason, the last good
    checkpoint and what to try. The original error is its ``__cause__``."""


class FailingRun(Protocol):
    """What :func:`record_failure` needs of the trainer's run state."""

    cfg: TrainConfig
    iteration: int
    phase: str  # "data" / "step": inside an iteration, before the update; "update"; "loop"
    last_checkpoint: Path | None
    last_saved_iteration: int

    @property
    def distributed(self) -> bool: ...

    def restore_good_state(self) -> bool: ...

    def save(self) -> Path: ...


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """True when every floating-point tensor holds only finite values."""
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def state_is_finite(modules: Iterable[nn.Module], optimizer: torch.optim.Optimizer) -> bool:
    """Weights, buffers and optimiser state (momentum) all finite."""
    tensors: list[torch.Tensor] = []
    for module in modules:
        tensors += [p.detach() for p in module.parameters()]
        tensors += list(module.buffers())
    for state in optimizer.state.values():
        tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    return all_finite(tensors)


def one_line(err: BaseException) -> str:
    """The error's message on one line. An error re-raised from a DataLoader worker carries
    the worker's whole traceback: its last line is the message."""
    text = str(err).strip() or type(err).__name__
    if "Original Traceback" in text:
        text = [line for line in text.splitlines() if line.strip()][-1]
    return " ".join(text.split())


def advice(err: BaseException, cfg: TrainConfig, phase: str) -> str:
    """What to try, for the kind of failure."""
    if isinstance(err, NonFiniteLossError):
        clip = cfg.optim.max_grad_norm
        steps = [
            f"lower optim.lr (now {cfg.optim.lr:g})",
            "enable clipping with optim.max_grad_norm (e.g. 5)"
            if clip is None
            else f"lower optim.max_grad_norm (now {clip:g})",
        ]
        if cfg.runtime.amp == "fp16":
            steps.append("use runtime.amp=bf16 instead of fp16")
        return "Try: " + "; ".join(steps) + " (a changed recipe starts a new run folder)"
    if isinstance(err, CheckpointWriteError):
        return "Free some disk space (or write the run elsewhere), then --resume auto"
    if phase == "data" and not cfg.data.skip_corrupt:
        # both data.train and data.skip_corrupt may change on resume (RESUME_SAFE_KEYS)
        return (
            "If a sample is unreadable: repair the data (data.train may change on resume) "
            "and --resume auto continues from the last checkpoint, or continue it skipping "
            "unreadable samples with --resume auto data.skip_corrupt=true (they are counted "
            "in log.txt and summary.json)"
        )
    return "Fix the cause, then --resume auto continues from the last checkpoint"


def _emergency_checkpoint(run: FailingRun, err: BaseException) -> tuple[Path | None, str]:
    """(the checkpoint written now or None, why none was written ('' if one was))."""
    if isinstance(err, CheckpointWriteError):
        return None, "checkpoints cannot be written"
    if run.distributed and not isinstance(err, NonFiniteLossError):
        return None, "not written with several processes unless every rank failed alike"
    if not run.restore_good_state():
        return None, f"the state after iteration {run.iteration} is not intact"
    if run.last_saved_iteration == run.iteration:
        return None, ""  # the last good state is already the last checkpoint
    try:
        return run.save(), ""
    except Exception as save_err:  # the original failure matters more than this one
        return None, f"writing it failed: {one_line(save_err)}"


def record_failure(
    run: FailingRun,
    err: Exception,
    log_line: Callable[[str], None],
    write_summary: Callable[[dict[str, Any]], None],
) -> Exception:
    """Leave the trace of a mid-run failure; return the exception to raise in its place
    (``raise record_failure(...) from err``): a :class:`NonFiniteLossError` or a
    :class:`TrainingError`, whose message ends with the last good checkpoint and advice.

    Writes the emergency checkpoint (see the module docstring), then the log line and the
    summary (``write_summary`` gets the extra summary keys; both are best effort: a full
    disk must not hide the original error).
    """
    phase = run.phase  # before restore_good_state rewinds it
    failed_at = run.iteration if phase == "loop" else run.iteration + 1
    reason = one_line(err)
    emergency, why_not = _emergency_checkpoint(run, err)
    where = str(run.last_checkpoint) if run.last_checkpoint else "none was written yet"
    if emergency is not None:
        where += " (written now, as an emergency checkpoint)"
    elif why_not:
        where += f" (no emergency checkpoint: {why_not})"
    tail = f"Last good checkpoint: {where}. {advice(err, run.cfg, phase)}"
    if isinstance(err, NonFiniteLossError):
        message = f"{reason.rstrip('.')}. {tail}"
        result: Exception = NonFiniteLossError(message)
    else:
        message = f"training failed at iteration {failed_at}: {reason.rstrip('.')}. {tail}"
        result = TrainingError(message)
    extra = {
        "failed_at_iteration": failed_at,
        "error": reason,
        "emergency_checkpoint": str(emergency) if emergency else None,
    }
    with contextlib.suppress(Exception):  # best effort, see the docstring
        log_line(message)
    with contextlib.suppress(Exception):
        write_summary(extra)
    return result
