"""Angles from cosines, the continuation of angular margins past pi, and the two gradients.

Shared by the SphereFace2 maths and the margin-softmax baselines.

Angular margins and their continuation past pi
-----------------------------------------------
ArcFace and SphereFace2-A score the own class with cos(theta + m), SphereFace2-M with
cos(m theta). Both are decreasing in theta only while the shifted angle stays below pi,
i.e. for theta below the joint theta0 = pi - m (additive) or pi / m (multiplicative, m > 1).
Clamping the shifted angle at pi (the published definition) keeps the value monotone but
flat: with the full gradient a sample past theta0 gets no pull from its own class at all,
so features that end up opposite their proxies stay there (a collapsed ArcFace run on real
faces: mean cosine -0.96 to the own proxy, verification at chance).

With the full gradient the margin value therefore continues past theta0 as

    -1 - (cos theta0 - cos theta) = cos theta - cos theta0 - 1

(for ArcFace: cos theta + cos m - 1). Why this one:
- it is the clamped function wherever that does not saturate (the same bits there);
- it is continuous at theta0, where both sides are -1;
- it is strictly decreasing up to theta = pi, with slope 1 per unit cosine: exactly the pull
  of the ``"detached"`` gradient, and of s * cos theta, the logit of every other class;
- it is written in the raw cosine, so the pull survives the ``ANGLE_EPS`` clamp of arccos
  (at cos = -1 exactly the gradient through arccos would be 0).
For SphereFace2 the continuation replaces g(cos(shifted angle)) itself (g(-1) = -1 as well),
not the argument of g: g'(z) vanishes at z = -1 for t > 1, so continuing inside g would
leave the pull near theta = pi close to zero again.

InsightFace's arcface_torch uses cos theta - m sin m past theta0 instead: the same slope
beyond, but the value jumps at theta0 from -1 down to -cos m - m sin m (-1.117 for m = 0.5),
so the loss is discontinuous there. Ours has no jump.

What the continuation cannot change: just inside theta0 the published function itself is
flat (d cos(theta + m) / d cos theta = sin(theta + m) / sin theta -> 0, and for SphereFace2
with t > 1 also g'(-1) = 0), so samples that reach the joint from outside move on slowly.
The ``"detached"`` gradient has no flat region anywhere; it keeps the published (clamped)
value, as OpenSphere does, because its pull already never vanishes.
"""

from __future__ import annotations

import math
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


def joint_cosine(m: float, *, multiplicative: bool) -> float:
    """cos theta0, where the shifted angle theta + m (or m theta) reaches pi.

    For m <= 0 (additive) or m <= 1 (multiplicative) the shifted angle never passes pi;
    the joint is then at pi itself and its cosine -1 (a value nothing uses).
    """
    if multiplicative:
        return math.cos(math.pi / m) if m > 1.0 else -1.0
    return math.cos(math.pi - m) if m > 0.0 else -1.0


def continue_past_pi(cos: Tensor, shifted: Tensor, value: Tensor, joint_cos: float) -> Tensor:
    """``value`` where ``shifted`` <= pi; beyond, cos - joint_cos - 1 (see the module docstring).

    ``value`` is the clamped margin function of ``cos`` (equal to -1 wherever ``shifted``
    exceeds pi), so the result is continuous and strictly decreasing in the angle.
    """
    return torch.where(shifted <= math.pi, value, cos - (1.0 + joint_cos))


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
