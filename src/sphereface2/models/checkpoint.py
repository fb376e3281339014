"""Training checkpoints: atomic writes, keep-last-N, safe loading and weight averaging.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads
with ``torch.load(weights_only=True)`` (no arbitrary code runs when opening one). Files are
``ckpt_<iteration, 8 digits>.pt`` in a run's ``checkpoints/`` folder. A write goes to a
temporary file in the same folder, is fsync'ed, then renamed over the final name: a crash
or a kill during the write leaves the previous checkpoints untouched, never a torn file.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from sphereface2.models.load_errors import describe_load_error
from sphereface2.models.sharded_checkpoint import merge_head, prune_shard_files

#: ``format`` value of a full training checkpoint (model, optimiser, RNG, data position).
CHECKPOINT_FORMAT = "sphereface2-checkpoint"
#: ``format`` value of an evaluation model file (weights only, possibly averaged).
MODEL_FORMAT = "sphereface2-model"
#: Bumped when the layout of the dict changes incompatibly.
FORMAT_VERSION = 1

_NAME_RE = re.compile(r"^ckpt_(\d+)\.pt$")
_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)$")


def checkpoint_name(iteration: int) -> str:
    """File name of the checkpoint written after ``iteration`` optimiser steps."""
    return f"ckpt_{iteration:08d}.pt"


def _checkpoint_dir(run_or_checkpoint_dir: str | Path) -> Path:
    path = Path(run_or_checkpoint_dir)
    return path / "checkpoints" if (path / "checkpoints").is_dir() else path


def list_checkpoints(run_or_checkpoint_dir: str | Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every checkpoint in a run folder (or its checkpoints/), oldest first."""
    directory = _checkpoint_dir(run_or_checkpoint_dir)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME_RE.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of a run folder, or None when there is none."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


class CheckpointWriteError(OSError):
    """A checkpoint (or model file) could not be written: the disk or quota is full, or
    the file system failed. The previous files are untouched."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` via a temporary file, fsync and rename (all or nothing).

    Raises:
        CheckpointWriteError: the write failed (torch reports a full disk as a
            RuntimeError such as "unexpected pos ..." or "file write failed"; the OS as
            an OSError); the message names ``path``.
    """
    path = Path(path)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(err, OSError | RuntimeError) and not isinstance(err, CheckpointWriteError):
            reason = " ".join(str(err).split())[:300] or type(err).__name__
            raise CheckpointWriteError(
                f"could not write checkpoint {path}: disk full? ({reason})"
            ) from err
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (best effort: not every platform can fsync a folder)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temp_files(directory: str | Path) -> list[Path]:
    """Delete temporary files left by writers that were killed (not by this process)."""
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        match = _TEMP_RE.match(path.name)
        if match and int(match.group(1)) != os.getpid():
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def prune_checkpoints(directory: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (0 keeps all); returns the deleted."""
    if keep_last <= 0:
        return []
    found = list_checkpoints(directory)
    doomed = [path for _, path in found[:-keep_last]]
    for path in doomed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    # the shard files of multi-process checkpoints go with their main files
    doomed += prune_shard_files(_checkpoint_dir(directory), [it for it, _ in found[-keep_last:]])
    return doomed


def save_checkpoint(
    state: Mapping[str, Any], directory: str | Path, iteration: int, keep_last: int = 0
) -> Path:
    """Write ``state`` (plus format tags) atomically as ``directory/ckpt_<iteration>.pt``,
    then prune to the newest ``keep_last``. Returns the new checkpoint's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(directory)
    payload = {"format": CHECKPOINT_FORMAT, "version": FORMAT_VERSION, **state}
    payload["iteration"] = iteration
    path = directory / checkpoint_name(iteration)
    atomic_save(payload, path)
    prune_checkpoints(directory, keep_last)
    return path


def load_file(
    path: str | Path,
    expected_format: str | Sequence[str],
    map_location: Any = "cpu",
    merge_shards: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint or model file with ``weights_only=True`` and check its format tag.

    A checkpoint written by several processes has its head in per-rank shard files beside
    it: with ``merge_shards`` its ``head`` is the full (plain) state dict, read from them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling raises many types; all mean "not a checkpoint"
        reason = describe_load_error(err)  # never torch's advice to drop weights_only
        raise ValueError(f"{path}: not a readable sphereface2 checkpoint ({reason})") from None
    found = check_format(data, path, expected_format)
    if merge_shards and found == CHECKPOINT_FORMAT and "head" in data:
        data["head"] = merge_head(path, data)
    return data


def check_format(data: Any, path: str | Path, expected_format: str | Sequence[str]) -> str:
    """The ``format`` tag of a loaded file, checked against ``expected_format`` and the
    supported version; errors name ``path``."""
    formats = (expected_format,) if isinstance(expected_format, str) else tuple(expected_format)
    found = data.get("format") if isinstance(data, dict) else None
    if found not in formats:
        raise ValueError(f"{path}: expected a {' or '.join(formats)} file, found format {found!r}")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: {found} version {data.get('version')!r} is not supported "
            f"(this sphereface2 reads version {FORMAT_VERSION})"
        )
    return found


def load_checkpoint(
    path: str | Path, map_location: Any = "cpu", merge_shards: bool = True
) -> dict[str, Any]:
    """Load a full training checkpoint written by ``save_checkpoint`` (see ``load_file``)."""
    return load_file(path, CHECKPOINT_FORMAT, map_location, merge_shards)


def average_state_dicts(
    state_dicts: Sequence[Mapping[str, torch.Tensor]], names: Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating-point entries (accumulated in float64, cast back);
    integer entries such as BatchNorm's ``num_batches_tracked`` are taken from the last.

    ``names`` label the inputs in error messages (e.g. file paths).
    """
    if not state_dicts:
        raise ValueError("nothing to average: no state dicts given")
    names = list(names) if names is not None else [f"#{i}" for i in range(len(state_dicts))]
    first = state_dicts[0]
    for name, sd in zip(names[1:], state_dicts[1:]):
        if set(sd) != set(first):
            diff = sorted(set(sd) ^ set(first))
            raise ValueError(f"{name}: its keys differ from {names[0]}'s: {diff[:5]}")
        for key, tensor in sd.items():
            if tensor.shape != first[key].shape:
                raise ValueError(
                    f"{name}: {key} has shape {tuple(tensor.shape)}, "
                    f"{names[0]} has {tuple(first[key].shape)}"
                )
    averaged: dict[str, torch.Tensor] = {}
    for key, ref in first.items():
        if ref.is_floating_point():
            total = torch.zeros(ref.shape, dtype=torch.float64, device=ref.device)
            for sd in state_dicts:
                total += sd[key].to(torch.float64)
            averaged[key] = (total / len(state_dicts)).to(ref.dtype)
        else:
            averaged[key] = state_dicts[-1][key].clone()
    return averaged


def average_checkpoints(
    paths: Sequence[str | Path], keys: Sequence[str] = ("backbone", "head")
) -> dict[str, dict[str, torch.Tensor]]:
    """Average the ``keys`` state dicts (default: backbone and head) of several checkpoints.

    Returns ``{key: averaged_state_dict}``. The paper reports the mean weights of the
    last five checkpoints, 1K iterations apart.
    """
    if not paths:
        raise ValueError("nothing to average: no checkpoint paths given")
    loaded = [load_file(p, (CHECKPOINT_FORMAT, MODEL_FORMAT)) for p in paths]
    names = [str(p) for p in paths]
    result = {}
    for key in keys:
        for name, data in zip(names, loaded):
            if key not in data:
                raise ValueError(f"{name}: has no {key!r} weights")
        result[key] = average_state_dicts([data[key] for data in loaded], names)
    return result
