"""Angles from cosines and the two ways of back-propagating through a margin.

Shared by the SphereFace2 maths and the margin-softmax baselines.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

ANGLE_EPS = 1e-6
"""Cosines are clamped to [-1 + ANGLE_EPS, 1 - ANGLE_EPS] before ``arccos``.

Why 1e-6: float32 still resolves 1 - 1e-6 (its spacing just below 1 is 6e-8), so the clamp
really keeps ``arccos`` off its singular end points, and the derivative
1 / sqrt(1 - cos^2) stays below about 710. A smaller value (OpenSphere's 1e-8) rounds to
exactly 1 in float32 and gives an infinite gradient; a larger one distorts angles more.
The clamp changes a cosine by at most 1e-6 (an angle by at most about 1.4e-3 rad, only for
angles already that close to 0 or pi). Heads compute cosines in float32 or float64, never
in half precision, where 1 - 1e-6 would round to 1.
"""


def angle(cos: Tensor) -> Tensor:
    """theta = arccos(cos), with ``cos`` clamped by :data:`ANGLE_EPS` so the gradient is finite."""
    return torch.acos(cos.clamp(-1.0 + ANGLE_EPS, 1.0 - ANGLE_EPS))


def scaled_with_gradient(
    cos: Tensor, value_fn: Callable[[Tensor], Tensor], scale: float, gradient: str
) -> Tensor:
    """Return ``scale * value_fn(cos)`` with the gradient chosen by ``gradient``.

    ``"full"``: autograd differentiates through ``value_fn``.
    ``"detached"``: the value is the same (to rounding) but the gradient with respect to
    ``cos`` is that of ``scale * cos``: the margin and any similarity mapping enter as a
    constant offset, computed without building a graph (the "gradient detachment" of
    OpenSphere and SphereFace-R).
    """
    if gradient == "full":
        return scale * value_fn(cos)
    if gradient != "detached":
        raise ValueError(f"gradient must be 'full' or 'detached', got {gradient!r}")
    scaled = scale * cos
    with torch.no_grad():
        offset = scale * value_fn(cos) - scaled
    return scaled + offset
