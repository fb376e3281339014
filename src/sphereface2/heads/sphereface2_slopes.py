"""SphereFace2 logits together with their analytic derivatives with respect to the cosine.

The fused head (:mod:`sphereface2.heads.fused_sphereface2`) computes every gradient itself,
so it needs dP/dcos and dN/dcos in closed form. These functions return the logit without
the bias, ``value = r * v(cos)``, and its derivative ``slope = d value / d cos``, with
exactly the clamps of :mod:`sphereface2.heads.sphereface2_math` (a clamp passes the
gradient on its closed interval, as autograd's ``clamp`` does):

    g(z) = 2 q^t - 1,  q = (clamp(z, -1, 1) + 1) / 2;   g'(z) = t q^(t-1) on [-1, 1], else 0
    C:  P = r (g(c) - m)                   dP/dc = r g'(c)
    A:  P = r g(cos(min(theta + m, pi)))   dP/dc = r g'(u) (-sin s') [s <= pi] dtheta/dc
    M:  P = r g(cos(min(m theta, pi)))     dP/dc = r g'(u) (-sin s') [s <= pi] m dtheta/dc
    negatives: N = r (g(c) + m) for C, r g(c) for A and M;   dN/dc = r g'(c)

with theta = arccos(c'), c' = clamp(c, -1 + eps, 1 - eps), dtheta/dc = -[c in range] /
sqrt(1 - c'^2), s the shifted angle, s' = min(s, pi) and u = cos(s').

With ``gradient="full"`` A and M continue past s = pi (the plain maths' continuation):

    P = r (c - cos theta0 - 1),   dP/dc = r          where s > pi

With ``gradient="detached"`` the value is the published clamped one and the slope is the
constant r.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sphereface2.heads.angular import ANGLE_EPS, continue_past_pi, joint_cosine


def _adjust_and_slope(z: Tensor, t: float) -> tuple[Tensor, Tensor]:
    """g(z) and g'(z) for any t, with the [-1, 1] clamp of ``similarity_adjust``."""
    q = (z.clamp(-1.0, 1.0) + 1.0) * 0.5
    if t == 1.0:
        power_minus_one = torch.ones_like(q)
    elif t == 2.0:
        power_minus_one = q
    elif t == 3.0:
        power_minus_one = q * q
    else:
        power_minus_one = q.pow(t - 1.0)
    g = 2.0 * (power_minus_one * q) - 1.0
    inside = (z >= -1.0) & (z <= 1.0)
    slope = torch.where(inside, t * power_minus_one, torch.zeros_like(q))
    return g, slope


def positive_value_and_slope(
    cos_y: Tensor, *, margin_type: str, r: float, m: float, t: float, gradient: str
) -> tuple[Tensor, Tensor]:
    """The positive logit without bias, r * v(cos_y), and its derivative in ``cos_y``."""
    if margin_type == "C":
        g, g_slope = _adjust_and_slope(cos_y, t)
        value = r * (g - m)
        slope = r * g_slope
    elif margin_type in ("A", "M"):
        low, high = -1.0 + ANGLE_EPS, 1.0 - ANGLE_EPS
        clamped = cos_y.clamp(low, high)
        theta = torch.acos(clamped)
        shifted = theta + m if margin_type == "A" else theta * m
        capped = shifted.clamp(max=math.pi)
        u = torch.cos(capped)
        g, g_slope = _adjust_and_slope(u, t)
        value = r * g
        d_theta = -torch.rsqrt(1.0 - clamped * clamped)
        d_theta = torch.where((cos_y >= low) & (cos_y <= high), d_theta, torch.zeros_like(u))
        d_shift = 1.0 if margin_type == "A" else m
        d_u = torch.where(shifted <= math.pi, -torch.sin(capped), torch.zeros_like(u))
        slope = r * g_slope * d_u * d_shift * d_theta
        if gradient == "full":  # past pi: r (c - cos theta0 - 1), slope r
            joint = joint_cosine(m, multiplicative=margin_type == "M")
            value = r * continue_past_pi(cos_y, shifted, g, joint)
            slope = torch.where(shifted <= math.pi, slope, torch.full_like(slope, r))
    else:
        raise ValueError(f"margin_type must be 'C', 'A' or 'M', got {margin_type!r}")
    return value, _slope_for_mode(slope, r, gradient)


def negative_value_and_slope(
    cos: Tensor, *, margin_type: str, r: float, m: float, t: float, gradient: str
) -> tuple[Tensor, Tensor]:
    """A negative logit without bias, r * (g(cos) + m_neg), and its derivative in ``cos``."""
    if margin_type not in ("C", "A", "M"):
        raise ValueError(f"margin_type must be 'C', 'A' or 'M', got {margin_type!r}")
    g, g_slope = _adjust_and_slope(cos, t)
    margin = m if margin_type == "C" else 0.0
    return r * (g + margin), _slope_for_mode(r * g_slope, r, gradient)


def _slope_for_mode(slope: Tensor, r: float, gradient: str) -> Tensor:
    if gradient == "full":
        return slope
    if gradient == "detached":
        return torch.full_like(slope, r)
    raise ValueError(f"gradient must be 'full' or 'detached', got {gradient!r}")
