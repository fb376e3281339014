# ruff: noqa: NPY002  (this module manages NumPy's *global* generator on purpose)
"""Seeding and RNG state capture, in a form ``torch.load(weights_only=True)`` accepts.

Three generators matter for exact resume: Python's ``random``, NumPy's global generator
and torch's (CPU, and every CUDA device). ``capture_rng_state`` stores them as tensors,
lists and ints only; ``restore_rng_state`` puts them back.

Data augmentation does not draw from a worker's running RNG: ``sample_seed`` derives one
seed per (run seed, epoch, sample index), so a sample's random flip does not depend on
which DataLoader worker loaded it or on how many batches that worker served before, and a
run resumed mid-epoch (whose batches land on different workers) sees the same flips.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

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


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    version, internal, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``capture_rng_state`` captured (CUDA states only if devices match)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    np.random.set_state((npst["kind"], keys, npst["pos"], npst["has_gauss"], npst["gauss"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            raise ValueError(
                f"the checkpoint holds RNG states for {len(cuda)} CUDA devices but "
                f"{torch.cuda.device_count()} are visible"
            )
        torch.cuda.set_rng_state_all(cuda)


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
