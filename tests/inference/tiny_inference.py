"""Tiny models, face folders and a float64 embedding reference for the inference tests.

The reference (``reference_embedding``) rebuilds the preprocessing from the documented
contract with numpy only: (x - 127.5) / 127.5, channels first, the raw embeddings of the
image and its mirror summed, L2-normalised in float64. It imports nothing from
``sphereface2.inference``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402

SIZE, DIM = tiny.SIZE, tiny.DIM


def run_folder(root: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A trainer-like run folder; returns it and the weights its ``model.pt`` holds."""
    weights = tiny.write_run_folder(root, with_model_pt=True)
    return root, weights[-1]


def face_folder(root: Path, identities: int = 4, per_identity: int = 3, seed: int = 0):
    """``root/id<k>/<j>.png`` faces; returns ``[(relative path, label)]``."""
    return tiny.write_image_folder(root, identities, per_identity, seed)


def face(identity: int, seed: int = 0, size: int = SIZE) -> np.ndarray:
    """One RGB uint8 (size, size, 3) face of ``identity``."""
    return tiny.face(np.random.default_rng(seed), identity, size)


def reference_embedding(
    weights: dict[str, torch.Tensor], images: list[np.ndarray], flip: bool = True
) -> np.ndarray:
    """Float64 unit rows from the weights, for images already at the model's size."""
    module = tiny.build_tiny()
    module.load_state_dict(weights)
    x = np.stack([(im.astype(np.float64) - 127.5) / 127.5 for im in images]).transpose(0, 3, 1, 2)
    with torch.no_grad():
        raw = module(torch.from_numpy(x).float()).double().numpy()
        if flip:
            raw = raw + module(torch.from_numpy(x[..., ::-1].copy()).float()).double().numpy()
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)
