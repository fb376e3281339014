"""One spawn of N Gloo processes per world size, shared by every multi-process test.

Under pytest-xdist the workers share the results through a file next to their temporary
directories (guarded by an advisory lock where the OS has ``fcntl``), so the processes are
started once per world size for the whole run, not once per worker.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from distributed_harness import run_world
from distributed_workers import run_all

try:
    import fcntl
except ImportError:  # Windows: every xdist worker spawns its own
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def world_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[int], list[dict[str, Any]]]:
    """``world_results(n)``: each rank's :func:`run_all` results for a world of ``n``,
    spawned on first use and cached (a failed spawn is re-raised, not retried)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the directory all xdist workers of this run have in common
    cache: dict[int, list[dict[str, Any]] | BaseException] = {}

    def spawn_or_load(world: int) -> list[dict[str, Any]]:
        saved = shared / f"distributed_world{world}.pt"
        with _locked(shared / f"distributed_world{world}.lock"):
            if saved.exists():
                return torch.load(saved)
            results = run_world(run_all, world)
            torch.save(results, saved)
            return results

    def get(world: int) -> list[dict[str, Any]]:
        if world not in cache:
            try:
                cache[world] = spawn_or_load(world)
            except Exception as error:  # noqa: BLE001 - re-raised for every test that asks
                cache[world] = error
        result = cache[world]
        if isinstance(result, BaseException):
            raise result
        return result

    return get
