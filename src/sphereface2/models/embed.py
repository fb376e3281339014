"""Run a model over a dataset: the embeddings of every image, in index order.

Shared by evaluation, export, inference and the label audit, so it lives with the models.
Flip test (the InsightFace protocol, ``eval/verification.py`` of insightface): each image
and its horizontal mirror are embedded and the two *raw* embeddings are SUMMED; the sum is
returned unnormalised (the metrics L2-normalise it).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from sphereface2.models.loading import EmbeddingModel

#: ``progress(done, total)`` after each batch.
Progress = Callable[[int, int], None]


def _images_of(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, list | tuple) else batch


def embed_dataset(
    model: EmbeddingModel,
    dataset: Dataset,
    batch_size: int = 64,
    flip: bool = True,
    num_workers: int = 0,
    progress: Progress | None = None,
) -> np.ndarray:
    """Embed every item of ``dataset`` in index order.

    Args:
        model: the model; the dataset's images must have its ``input_size``.
        dataset: yields ``image`` or ``(image, anything)``; images are (3, H, W) normalised
            floats (:func:`sphereface2.data.transforms.eval_transform`).
        batch_size: images per forward pass (a flipped batch is a second pass).
        flip: sum the raw embeddings of each image and of its horizontal mirror.
        num_workers: DataLoader workers decoding images.
        progress: called as ``progress(done, total)`` after every batch.

    Returns:
        (N, d) float32 raw (unnormalised) embeddings; flip-fused when ``flip``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    total = len(dataset)  # type: ignore[arg-type]
    out = np.empty((total, model.embedding_dim), dtype=np.float32)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    done = 0
    for batch in loader:
        images = _images_of(batch)
        emb = model.embed(images)
        if flip:
            emb = emb + model.embed(images.flip(-1))
        count = emb.shape[0]
        if emb.shape[1] != model.embedding_dim:
            raise ValueError(
                f"{model.name}: produced {emb.shape[1]}-d embeddings, expected "
                f"{model.embedding_dim}"
            )
        out[done : done + count] = emb
        done += count
        if progress is not None:
            progress(done, total)
    if done != total:
        raise RuntimeError(f"the data loader yielded {done} images, the dataset has {total}")
    return out


class ProgressPrinter:
    """``progress(done, total)`` that prints a line with throughput and ETA at most every
    ``every_s`` seconds (and at the end)."""

    def __init__(self, label: str, stream: TextIO | None = None, every_s: float = 10.0) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.start = time.perf_counter()
        self.last = self.start

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.every_s and done != total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (total - done) / rate if rate > 0 else float("inf")
        print(
            f"{self.label}: {done}/{total} images ({rate:.0f} images/s, ETA {eta:.0f} s)",
            file=self.stream,
            flush=True,
        )
