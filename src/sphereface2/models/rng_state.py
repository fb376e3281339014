# ruff: noqa: NPY002  (this module reads and sets NumPy's *global* generator on purpose)
"""The random-generator states a training checkpoint holds, in a form
``torch.load(weights_only=True)`` accepts.

Three generators matter for exact resume: Python's ``random``, NumPy's global generator
and torch's (CPU, and every CUDA device). ``capture_rng_state`` stores them as tensors,
lists and ints only; ``restore_rng_state`` puts them back. Part of the checkpoint schema
(:mod:`sphereface2.models.training_state`); seeding lives in :mod:`sphereface2.train.rng`.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


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
