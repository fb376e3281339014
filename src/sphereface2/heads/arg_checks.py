"""Checks shared by every head: hyper-parameters at construction, batches at each call.

Shape and dtype checks read only tensor metadata and are always on. Value checks (finite
embeddings, labels in range) read tensor contents, which forces a device-to-host sync on a
GPU; heads run them only when built with ``validate=True``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

GRADIENT_MODES = ("full", "detached")


def check_choice(head: str, name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError naming them."""
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{head}: {name} must be one of {valid}, got {value!r}")
    return value


def check_number(
    head: str,
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = False,
    high_inclusive: bool = False,
) -> float:
    """Return ``value`` as a float after checking it is a finite real number in the range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{head}: {name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{head}: {name} must be finite, got {value!r}")
    if low is not None and (number < low or (number == low and not low_inclusive)):
        op = ">=" if low_inclusive else ">"
        raise ValueError(f"{head}: {name} must be {op} {low:g}, got {value!r}")
    if high is not None and (number > high or (number == high and not high_inclusive)):
        op = "<=" if high_inclusive else "<"
        raise ValueError(f"{head}: {name} must be {op} {high:g}, got {value!r}")
    return number


def check_sizes(head: str, num_classes: object, embedding_dim: object) -> tuple[int, int]:
    """Both sizes must be ints; at least two classes (one-vs-rest and softmax need a rest)."""
    for name, value, minimum in (
        ("num_classes", num_classes, 2),
        ("embedding_dim", embedding_dim, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{head}: {name} must be an int, got {value!r}")
        if value < minimum:
            raise ValueError(f"{head}: {name} must be >= {minimum}, got {value}")
    return int(num_classes), int(embedding_dim)  # type: ignore[arg-type]


def check_batch(
    head: str,
    embeddings: Tensor,
    labels: Tensor,
    *,
    num_classes: int,
    embedding_dim: int,
    check_values: bool,
) -> None:
    """Raise ValueError unless ``embeddings`` is (B, embedding_dim) float and ``labels`` (B,) int.

    With ``check_values`` also require finite embeddings and labels in [0, num_classes).
    """
    if not isinstance(embeddings, Tensor) or not isinstance(labels, Tensor):
        raise ValueError(
            f"{head}: embeddings and labels must be tensors, got "
            f"{type(embeddings).__name__} and {type(labels).__name__}"
        )
    if embeddings.dim() != 2 or not embeddings.is_floating_point():
        raise ValueError(
            f"{head}: embeddings must be a 2-D floating-point tensor (batch, {embedding_dim}), "
            f"got shape {tuple(embeddings.shape)} dtype {embeddings.dtype}"
        )
    if embeddings.shape[1] != embedding_dim:
        raise ValueError(
            f"{head}: embeddings have dimension {embeddings.shape[1]}, "
            f"the head was built for {embedding_dim}"
        )
    if embeddings.shape[0] == 0:
        raise ValueError(f"{head}: empty batch")
    if (
        labels.dim() != 1
        or labels.is_floating_point()
        or labels.is_complex()
        or labels.dtype == torch.bool
    ):
        raise ValueError(
            f"{head}: labels must be a 1-D integer tensor, "
            f"got shape {tuple(labels.shape)} dtype {labels.dtype}"
        )
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"{head}: {labels.shape[0]} labels for a batch of {embeddings.shape[0]} embeddings"
        )
    if not check_values:
        return
    finite = torch.isfinite(embeddings).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0, 0])
        raise ValueError(f"{head}: embedding at batch index {row} has a non-finite value")
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        index = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{head}: label {int(labels[index])} at batch index {index} is outside "
            f"[0, {num_classes})"
        )
