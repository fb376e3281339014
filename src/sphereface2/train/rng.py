# ruff: noqa: NPY002  (this module manages NumPy's *global* generator on purpose)
"""Seeding: the run's generators, per-sample augmentation seeds and a local fork.

The capture and restore of the generators' states for exact resume belong to the
checkpoint schema, :mod:`sphereface2.models.rng_state` (re-exported here).

Data augmentation does not draw from a worker's running RNG: ``sample_seed`` derives one
seed per (run seed, epoch, sample index), so a sample's random flip does not depend on
which DataLoader worker loaded it or on how many batches that worker served before, and a
run resumed mid-epoch (whose batches land on different workers) sees the same flips.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from sphereface2.models.rng_state import capture_rng_state, restore_rng_state

__all__ = [
    "capture_rng_state",
    "derive_seed",
    "fork_local_rng",
    "restore_rng_state",
    "sample_seed",
    "seed_everything",
]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One round of SplitMix64: a cheap, well-mixed 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixing the integers ``parts`` (order matters); stable across runs."""
    h = 0x5EED
    for part in parts:
        h = _splitmix64(h ^ (int(part) & _MASK64))
    return h & ((1 << 63) - 1)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of dataset item ``index`` in ``epoch`` of a run seeded ``seed``."""
    return derive_seed(seed, epoch, index)


def seed_everything(seed: int) -> None:
    """Seed this process's Python ``random``, NumPy global and torch (CPU, CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


class fork_local_rng:  # noqa: N801 (used like a function: ``with fork_local_rng(seed):``)
    """Context manager: seed the global Python/NumPy/torch CPU generators with ``seed`` and
    restore their previous states on exit, so per-sample seeding in the main process
    (``num_workers=0``) does not disturb the training loop's RNG stream."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self._py = random.getstate()
        self._np = np.random.get_state()
        self._torch = torch.get_rng_state()
        random.seed(self.seed)
        np.random.seed(self.seed % (1 << 32))
        torch.default_generator.manual_seed(self.seed)  # CPU only: CUDA streams stay untouched

    def __exit__(self, *exc: object) -> None:
        random.setstate(self._py)
        np.random.set_state(self._np)
        torch.set_rng_state(self._torch)
