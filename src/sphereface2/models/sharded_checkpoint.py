"""Checkpoints of runs whose classifier is sharded over processes.

With one process a checkpoint is one file, ``ckpt_<it>.pt``, holding everything. With W
processes each rank keeps different proxy rows (and their momentum), so no rank ever has
the whole (K, d) matrix. A checkpoint is then W + 1 files, written in this order:

* ``ckpt_<it>.rank<r>-of-<W>.pt`` by every rank r: its rows of the head's sharded tensors,
  the optimiser state of those tensors (same rows), its class range and its RNG states;
* ``ckpt_<it>.pt`` by rank 0 once all shard files are on disk (a barrier between): config,
  backbone, the replicated head tensors, the optimiser state of everything else, scaler,
  rank 0's RNG states, the data position and a ``sharding`` record (world size, class
  count, sharded keys and their optimiser parameter ids).

The main file is the commit: the checkpoint listing only sees main files, so a crash while
shards are written leaves the previous checkpoint the newest complete one. Every file is
written atomically (:func:`~sphereface2.models.checkpoint.atomic_save`).

Reading: :func:`load_rows` gives one rank's rows of the sharded tensors for any class range,
so a run saved with W processes resumes with W' processes (or one); shard files are opened
memory-mapped and only the rows that overlap the range are read.
:func:`merge_head` gives the full head state dict (what evaluation and averaging need).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sphereface2.models.load_errors import describe_load_error

#: ``format`` value of one rank's shard file.
SHARD_FORMAT = "sphereface2-checkpoint-shard"
SHARD_VERSION = 1

_SHARD_RE = re.compile(r"^ckpt_(\d+)\.rank(\d+)-of-(\d+)\.pt$")


def shard_file_name(iteration: int, rank: int, world_size: int) -> str:
    """File name of rank ``rank``'s shard of the checkpoint after ``iteration`` steps."""
    return f"ckpt_{iteration:08d}.rank{rank:05d}-of-{world_size:05d}.pt"


def shard_paths(main: str | Path, iteration: int, world_size: int) -> list[Path]:
    """The shard files of the checkpoint whose main file is ``main``, in rank order."""
    folder = Path(main).parent
    return [folder / shard_file_name(iteration, r, world_size) for r in range(world_size)]


def list_shard_files(directory: str | Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every shard file in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _SHARD_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def prune_shard_files(directory: str | Path, kept_iterations: Sequence[int]) -> list[Path]:
    """Delete shard files of checkpoints that are gone: those of iterations not in
    ``kept_iterations`` and older than the newest kept one (newer ones may belong to a
    checkpoint being written)."""
    if not kept_iterations:
        return []
    newest = max(kept_iterations)
    kept = set(kept_iterations)
    doomed = [p for it, p in list_shard_files(directory) if it not in kept and it < newest]
    for path in doomed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return doomed


def sharding_record(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint's ``sharding`` record; checkpoints without one are from one process."""
    record = checkpoint.get("sharding")
    if not record:
        return {"world_size": 1, "keys": {}}
    return dict(record)


def _load_shard(path: Path, iteration: int, rank: int, world_size: int) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: shard {rank} of {world_size} of the checkpoint of iteration {iteration} "
            "is missing (every rank writes one; copy all of them with the main file)"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # unpickling raises many types; all mean "not a shard"
        reason = describe_load_error(err)  # never torch's advice to drop weights_only
        raise ValueError(f"{path}: not a readable checkpoint shard ({reason})") from None
    ok = (
        isinstance(data, dict)
        and data.get("format") == SHARD_FORMAT
        and data.get("version") == SHARD_VERSION
        and (data.get("iteration"), data.get("rank"), data.get("world_size"))
        == (iteration, rank, world_size)
    )
    if not ok:
        raise ValueError(
            f"{path}: expected shard {rank} of {world_size} of iteration {iteration} "
            f"({SHARD_FORMAT} v{SHARD_VERSION})"
        )
    return data


class ShardReader:
    """The shard files of one checkpoint, opened lazily (memory-mapped) and cached."""

    def __init__(self, main: str | Path, checkpoint: Mapping[str, Any]) -> None:
        self.main = Path(main)
        self.iteration = int(checkpoint["iteration"])
        self.record = sharding_record(checkpoint)
        self.world_size = int(self.record["world_size"])
        self.paths = shard_paths(self.main, self.iteration, self.world_size)
        self._cache: dict[int, dict[str, Any]] = {}

    def shard(self, rank: int) -> dict[str, Any]:
        if rank not in self._cache:
            self._cache[rank] = _load_shard(self.paths[rank], self.iteration, rank, self.world_size)
        return self._cache[rank]

    def rows(self, section: str, key: str, start: int, end: int) -> Tensor:
        """Rows ``[start, end)`` of sharded tensor ``key`` from ``section`` ("head", or
        "optimizer" with key = "<param id>/<state name>"), assembled across shard files."""
        pieces = []
        for rank in range(self.world_size):
            shard = self.shard(rank)
            first, last = shard["class_range"]
            lo, hi = max(start, first), min(end, last)
            if lo >= hi:
                continue
            tensor = _lookup(shard[section], key, self.paths[rank])
            pieces.append(tensor[lo - first : hi - first])
        if not pieces:  # an empty range still needs the right trailing shape and dtype
            tensor = _lookup(self.shard(0)[section], key, self.paths[0])
            return tensor[:0].clone()
        return torch.cat(pieces).clone()  # clone: detach from the memory-mapped files


def _lookup(section: Mapping[str, Any], key: str, path: Path) -> Tensor:
    if key not in section:
        raise ValueError(f"{path}: has no {key!r}")
    return section[key]


def merge_head(main: str | Path, checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The full (plain) head state dict of a checkpoint: replicated tensors from the main
    file, sharded ones concatenated from the shard files (a one-process checkpoint's head
    is returned as it is)."""
    record = sharding_record(checkpoint)
    if record["world_size"] == 1:
        return dict(checkpoint["head"])
    reader = ShardReader(main, checkpoint)
    head = dict(checkpoint["head"])
    num_classes = int(record["num_classes"])
    for key in record["keys"]:
        head[key] = reader.rows("head", key, 0, num_classes)
    return head


def load_rows(
    main: str | Path,
    checkpoint: Mapping[str, Any],
    start: int,
    end: int,
    default_keys: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """``checkpoint`` (a main file's dict) with its head and optimiser state narrowed to
    classes ``[start, end)``: ready for ``load_state_dict`` of a sharded head that owns
    that range and of its optimiser. Works whatever the world size that saved it.
    ``default_keys`` ({sharded key: optimiser parameter id}) stands in for the record of
    a checkpoint written before sharding records existed (always one process)."""
    record = sharding_record(checkpoint)
    keys = record["keys"] or dict(default_keys or {})
    out = dict(checkpoint)
    head = dict(checkpoint["head"])
    optimizer = dict(checkpoint["optimizer"])
    state = dict(optimizer["state"])
    if record["world_size"] == 1:
        for key in keys:
            head[key] = head[key][start:end].clone()
        for param_id in keys.values():
            if param_id in state:
                state[param_id] = {
                    name: _rows_of(value, start, end) for name, value in state[param_id].items()
                }
    else:
        reader = ShardReader(main, checkpoint)
        for key, param_id in record["keys"].items():
            head[key] = reader.rows("head", key, start, end)
            names = reader.shard(0)["optimizer"].get("names", {}).get(str(param_id), [])
            if names:
                state[param_id] = {
                    name: reader.rows("optimizer", f"{param_id}/{name}", start, end)
                    for name in names
                }
    optimizer["state"] = state
    out["head"], out["optimizer"] = head, optimizer
    return out


def _rows_of(value: Any, start: int, end: int) -> Any:
    """Per-row optimiser state (e.g. momentum) is sliced; scalars (e.g. a step count) kept."""
    if isinstance(value, Tensor) and value.dim() >= 1:
        return value[start:end].clone()
    return value


def split_optimizer_state(
    optimizer_state: Mapping[str, Any], sharded_ids: Mapping[str, int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into (everything but the sharded parameters' state,
    the sharded state as flat ``{"<id>/<name>": tensor}`` plus ``names``)."""
    ids = set(sharded_ids.values())
    state = optimizer_state["state"]
    rest = {**optimizer_state, "state": {k: v for k, v in state.items() if k not in ids}}
    flat: dict[str, Any] = {"names": {}}
    for param_id in sorted(ids):
        if param_id not in state:
            continue
        entries = state[param_id]
        flat["names"][str(param_id)] = sorted(entries)
        for name, value in entries.items():
            if not (isinstance(value, Tensor) and value.dim() >= 1):
                raise ValueError(
                    f"optimiser state {name!r} of a sharded parameter is not per-row; "
                    "only optimisers with per-element state (SGD momentum) can be sharded"
                )
            flat[f"{param_id}/{name}"] = value
    return rest, flat


def shard_payload(
    iteration: int,
    rank: int,
    world_size: int,
    class_range: tuple[int, int],
    head_rows: Mapping[str, Tensor],
    optimizer_rows: Mapping[str, Any],
    rng: Mapping[str, Any],
) -> dict[str, Any]:
    """The dict one rank writes as its shard file."""
    return {
        "format": SHARD_FORMAT,
        "version": SHARD_VERSION,
        "iteration": iteration,
        "rank": rank,
        "world_size": world_size,
        "class_range": [int(class_range[0]), int(class_range[1])],
        "head": dict(head_rows),
        "optimizer": dict(optimizer_rows),
        "rng": dict(rng),
    }


def shard_rng(main: str | Path, checkpoint: Mapping[str, Any], rank: int) -> dict[str, Any]:
    """Rank ``rank``'s RNG states as saved (rank 0's are in the main file)."""
    if rank == 0 or sharding_record(checkpoint)["world_size"] == 1:
        return checkpoint["rng"]
    return ShardReader(main, checkpoint).shard(rank)["rng"]
