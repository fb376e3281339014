"""One spawn of N Gloo processes per world size, shared by every multi-process test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from distributed_harness import run_world
from distributed_workers import run_all


@pytest.fixture(scope="session")
def world_results() -> Callable[[int], list[dict[str, Any]]]:
    """``world_results(n)``: each rank's :func:`run_all` results for a world of ``n``,
    spawned on first use and cached (a failed spawn is re-raised, not retried)."""
    cache: dict[int, list[dict[str, Any]] | BaseException] = {}

    def get(world: int) -> list[dict[str, Any]]:
        if world not in cache:
            try:
                cache[world] = run_world(run_all, world)
            except Exception as error:  # noqa: BLE001 - re-raised for every test that asks
                cache[world] = error
        result = cache[world]
        if isinstance(result, BaseException):
            raise result
        return result

    return get
