"""Use a trained model in three lines: load it, embed images, compare faces.

    >>> import sphereface2
    >>> m = sphereface2.load_model("runs/sf2")          # checkpoint, run folder, export
    >>> m.compare("a.jpg", "b.jpg")                     # cosine, a float
    0.71...
    >>> m.embed(["a.jpg", "b.jpg"]).shape               # L2-normalised float32 rows
    (2, 512)

Preprocessing is the model's own, as in evaluation: decode to RGB, resize (bilinear,
antialiased) to the model's input size when the image has another size, scale to [-1, 1].
Images are expected to be aligned face crops, like the training data; nothing detects or
aligns faces here (``sphereface2 data align`` does, from landmarks).

Flip test (on by default, as in the evaluation protocols): the raw embeddings of the image
and of its horizontal mirror are summed before the L2 normalisation.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sphereface2.data.transforms import eval_transform
from sphereface2.inference.fingerprint import Fingerprint, model_fingerprint
from sphereface2.inference.images import as_image_list, load_rgb
from sphereface2.metrics.verification import l2_normalize
from sphereface2.models.device import resolve_device as resolve_torch_device
from sphereface2.models.loading import (
    ONNX_FILE,
    EmbeddingModel,
    find_run_folder,
    load_embedding_model,
)

#: ``progress(done, total)`` after each batch.
Progress = Callable[[int, int], None]


class FaceModel:
    """A loaded model with its preprocessing: images in, unit-length embeddings out.

    Args:
        model: the loaded :class:`~sphereface2.models.loading.EmbeddingModel`.
        batch_size: images per forward pass (the flip test adds a second pass).
        flip: the default of :meth:`embed`'s ``flip``.

    Attributes:
        model: the wrapped model.
        input_size, embedding_dim, name, description, source: the model's.
        run_folder: the training run the model came from, or None (exports, ONNX files).
    """

    def __init__(self, model: EmbeddingModel, batch_size: int = 64, flip: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.flip = flip
        self.input_size: tuple[int, int] = tuple(model.input_size)  # type: ignore[assignment]
        self.embedding_dim: int = model.embedding_dim
        self.name: str = model.name
        self.description: str = model.description
        self.source: str = model.source
        self.run_folder: Path | None = find_run_folder(model.source) if model.source else None
        self._transform = eval_transform(model.input_size)

    @functools.cached_property
    def fingerprint(self) -> Fingerprint:
        """Which weights these are (hashed once, on first use)."""
        return model_fingerprint(self.model)

    def _embed_batch(self, items: list[Any], first: int, flip: bool) -> np.ndarray:
        tensors = [self._transform(load_rgb(item, first + i)) for i, item in enumerate(items)]
        batch = torch.stack(tensors)
        raw = self.model.embed(batch)
        if flip:
            raw = raw + self.model.embed(batch.flip(-1))
        # a zero or non-finite embedding is an error naming the image's position
        what = f"{self.name}: embeddings of the images"
        return l2_normalize(raw, what, row_offset=first).astype(np.float32, copy=False)

    def embed(
        self,
        images: Any,
        *,
        flip: bool | None = None,
        batch_size: int | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """L2-normalised embeddings, one float32 row per image, always (N, d).

        Args:
            images: one image or many: file paths, RGB uint8 (H, W, 3) arrays, PIL images,
                a list of those, or an (N, H, W, 3) uint8 array.
            flip: sum with the embedding of the mirrored image (default: the model's
                ``flip``, True unless set otherwise at load).
            batch_size: images per forward pass (default: the model's).
            progress: ``progress(done, total)`` after each batch.

        Raises:
            ValueError: an image that cannot be read or is not RGB uint8 (naming it).
        """
        items, _ = as_image_list(images)
        flip = self.flip if flip is None else flip
        size = batch_size or self.batch_size
        out = np.empty((len(items), self.embedding_dim), np.float32)
        for start in range(0, len(items), size):
            part = items[start : start + size]
            out[start : start + len(part)] = self._embed_batch(part, start, flip)
            if progress is not None:
                progress(start + len(part), len(items))
        return out

    def compare(self, a: Any, b: Any, *, flip: bool | None = None) -> float | np.ndarray:
        """Cosine similarity of faces (in [-1, 1]; higher = more alike).

        ``a`` and ``b`` one image each: a float. One and many: one score per image of the
        many. Many and many (the same number): the score of each pair ``(a[i], b[i])``.
        """
        items_a, single_a = as_image_list(a)
        items_b, single_b = as_image_list(b)
        if not (single_a or single_b) and len(items_a) != len(items_b):
            raise ValueError(
                f"compare: {len(items_a)} images against {len(items_b)}; give one image on "
                "one side or the same number on both"
            )
        emb_a = self.embed(items_a, flip=flip)
        emb_b = self.embed(items_b, flip=flip)
        scores = np.einsum("ij,ij->i", *np.broadcast_arrays(emb_a, emb_b))
        if single_a and single_b:
            return float(scores[0])
        return scores.astype(np.float32)

    def __repr__(self) -> str:
        return f"FaceModel({self.description}, flip={self.flip}, batch_size={self.batch_size})"


def _onnx_without_cuda(path: Path) -> bool:
    """An ONNX model (file, or export folder holding only one) whose onnxruntime lacks
    CUDA: ``device='auto'`` must then stay on the CPU instead of failing."""
    is_onnx = path.suffix.lower() == ".onnx" or (
        path.is_dir() and (path / ONNX_FILE).is_file() and find_run_folder(path) is None
    )
    if not is_onnx:
        return False
    try:
        import onnxruntime
    except ImportError:
        return False  # loading will say that onnxruntime is missing
    return "CUDAExecutionProvider" not in onnxruntime.get_available_providers()


def resolve_device(path: str | os.PathLike, device: str | torch.device) -> str:
    """``models.device.resolve_device``'s rule, except that ``auto`` stays on the CPU for
    an ONNX file when onnxruntime has no CUDA provider."""
    if device == "auto" and torch.cuda.is_available() and _onnx_without_cuda(Path(path)):
        return "cpu"
    return str(resolve_torch_device(device))


def load_model(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "auto",
    batch_size: int = 64,
    flip: bool = True,
    average_last: int | None = None,
) -> FaceModel:
    """Open a model for use: a checkpoint (``.pt``), a run folder, a safetensors export or
    an ONNX file (see :func:`~sphereface2.models.loading.load_embedding_model`).

    Args:
        path: the model.
        device: ``auto`` (a GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: images per forward pass.
        flip: the flip test by default in :meth:`FaceModel.embed` and ``compare``.
        average_last: with a run folder, average its last N checkpoints.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: a file that is not a model (the message names it).
    """
    model = load_embedding_model(path, resolve_device(path, device), average_last)
    return FaceModel(model, batch_size=batch_size, flip=flip)
