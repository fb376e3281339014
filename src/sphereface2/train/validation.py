"""Validation during training: flip-fused embeddings of .bin pair sets, 10-fold accuracy.

Each image and its horizontal flip are embedded and the two raw embeddings summed (the
InsightFace protocol, its ``eval/verification.py``); the metric itself comes from
:mod:`sphereface2.metrics.verification`, which works on embeddings, not models.
Validation never touches the training RNG streams or the weights (eval mode, no grad),
so running it more or less often does not change the training trajectory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from sphereface2.data.bin_format import BinPairDataset
from sphereface2.data.transforms import eval_transform
from sphereface2.metrics.verification import fuse_flip, kfold_accuracy
from sphereface2.train.rng import capture_rng_state, restore_rng_state


@dataclass
class ValSet:
    """A loaded verification set: its images and one same/different flag per pair."""

    name: str
    dataset: BinPairDataset

    @property
    def issame(self) -> np.ndarray:
        return np.asarray(self.dataset.issame, dtype=bool)


def missing_val_files_message(entries: Sequence[tuple[str, str]]) -> str | None:
    """Why training cannot start when some ``data.val`` files are missing, and how to
    point the config at them or drop them; None when every file exists."""
    missing = [
        (i, name, path) for i, (name, path) in enumerate(entries) if not os.path.isfile(path)
    ]
    if not missing:
        return None
    listed = "; ".join(
        f"validation set {name!r}: file not found: {path} (data.val.{i}.path)"
        for i, name, path in missing
    )
    i, _, path = missing[0]
    return (
        f"{listed}; give the paths as overrides, e.g. data.val.{i}.path=/data/"
        f"{os.path.basename(path)}, or train without validation sets: data.val=[]"
    )


def load_val_sets(entries: Sequence[tuple[str, str]], input_size: Sequence[int]) -> list[ValSet]:
    """Open every ``(name, path)`` .bin (``data.val`` in order); missing files are one error,
    raised before any training, naming them and the overrides that fix it."""
    problem = missing_val_files_message(entries)
    if problem is not None:
        raise FileNotFoundError(problem)
    sets = []
    for name, path in entries:
        try:
            dataset = BinPairDataset(path, eval_transform(tuple(input_size)))
        except FileNotFoundError:
            raise FileNotFoundError(f"validation set {name!r}: file not found: {path}") from None
        sets.append(ValSet(name, dataset))
    return sets


@torch.no_grad()
def embed_with_flip(
    backbone: nn.Module,
    dataset: Any,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, d) float32 embeddings of every image and of its horizontal flip."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        generator=torch.Generator(),  # so the loader never draws from the global RNG
    )
    was_training = backbone.training
    backbone.eval()
    plain, flipped = [], []
    try:
        for images, _ in loader:
            images = images.to(device)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            both = torch.cat([images, images.flip(3)])
            amp = (
                torch.autocast(device.type, dtype=autocast_dtype)
                if autocast_dtype is not None
                else contextlib.nullcontext()
            )
            with amp:
                out = backbone(both).float()
            half = images.shape[0]
            plain.append(out[:half].cpu())
            flipped.append(out[half:].cpu())
    finally:
        backbone.train(was_training)
    return torch.cat(plain).numpy(), torch.cat(flipped).numpy()


def validate(
    backbone: nn.Module,
    val_sets: Sequence[ValSet],
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    num_workers: int = 0,
) -> dict[str, float]:
    """``{"<name>_acc": mean, "<name>_acc_std": std}`` of 10-fold accuracy per set."""
    rng = capture_rng_state()
    results: dict[str, float] = {}
    try:
        for val in val_sets:
            emb, emb_flip = embed_with_flip(
                backbone,
                val.dataset,
                batch_size,
                device,
                autocast_dtype,
                channels_last,
                num_workers,
            )
            fused = fuse_flip(emb, emb_flip)
            result = kfold_accuracy(fused[0::2], fused[1::2], val.issame)
            results[f"{val.name}_acc"] = result.accuracy
            results[f"{val.name}_acc_std"] = result.std
    finally:
        restore_rng_state(rng)
    return results
