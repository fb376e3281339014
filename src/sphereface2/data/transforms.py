"""Transforms from decoded RGB uint8 (H, W, 3) arrays to model tensors (3, H, W).

The paper's recipe: pre-aligned crops, (x - 127.5) / 127.5 into [-1, 1], and a random
horizontal flip with p = 0.5 as the only augmentation. Resizing happens only when the
stored size differs from the model's input size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

Transform = Callable[[np.ndarray], torch.Tensor]


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1] via (x - 127.5) / 127.5."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) array, got {rgb.dtype} {rgb.shape}")
    chw = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    return chw.float().sub_(127.5).div_(127.5)


def resize_tensor(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a (3, H, W) tensor to ``size`` = (H, W); no-op when equal."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(
        image.unsqueeze(0), size=size, mode="bilinear", align_corners=False, antialias=True
    ).squeeze(0)


class FaceTransform:
    """Decoded RGB array -> normalised tensor, with optional resize and random flip.

    ``generator`` makes the flips reproducible; without it torch's global RNG is used
    (which DataLoader seeds per worker).
    """

    def __init__(
        self,
        input_size: Sequence[int] | None = None,
        flip_p: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
        self.input_size = tuple(input_size) if input_size is not None else None
        self.flip_p = flip_p
        self.generator = generator

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        image = to_tensor(rgb)
        if self.input_size is not None:
            image = resize_tensor(image, self.input_size)
        if self.flip_p > 0 and torch.rand((), generator=self.generator).item() < self.flip_p:
            image = image.flip(-1)
        return image

    def __repr__(self) -> str:
        return f"FaceTransform(input_size={self.input_size}, flip_p={self.flip_p})"


def train_transform(input_size: Sequence[int] | None = None) -> FaceTransform:
    """The paper's training transform: normalise, resize if needed, flip with p = 0.5."""
    return FaceTransform(input_size=input_size, flip_p=0.5)


def eval_transform(input_size: Sequence[int] | None = None) -> FaceTransform:
    """Evaluation transform: normalise and resize if needed; no randomness."""
    return FaceTransform(input_size=input_size, flip_p=0.0)
