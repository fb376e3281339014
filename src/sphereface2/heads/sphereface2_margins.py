"""SphereFace2's margin functions: per margin type the value and, when asked, its slope.

The one definition of what the positive and negative logits are (divided by r, without
the bias), used by the plain path through autograd and by the fused pass, which asks for
the analytic slope d/dcos as well (``with_slope=True``) and gets it from the same
intermediate quantities:

    g(z) = 2 q^t - 1,  q = (clamp(z, -1, 1) + 1) / 2;   g'(z) = t q^(t-1) on [-1, 1], else 0
    C:  P = g(c) - m                     dP/dc = g'(c)
    A:  P = g(cos(min(theta + m, pi)))   dP/dc = g'(u) (-sin s') [s <= pi] dtheta/dc
    M:  P = g(cos(min(m theta, pi)))     dP/dc = g'(u) (-sin s') [s <= pi] m dtheta/dc
    negatives: N = g(c) + m_neg, m_neg = m for C and 0 for A and M;   dN/dc = g'(c)

with theta = arccos(c'), c' = clamp(c, -1 + eps, 1 - eps), dtheta/dc = -[c in range] /
sqrt(1 - c'^2), s the shifted angle, s' = min(s, pi) and u = cos(s'). A clamp passes the
gradient on its closed interval, as autograd's ``clamp`` does. ``continued`` A and M
positives follow c - cos theta0 - 1, slope 1, where s > pi (see
:mod:`sphereface2.heads.angular`).

Rounding: without the slope g uses ``q.pow(t)`` (the plain path differentiates through it);
with the slope t = 1, 2, 3 use q^(t-1) by multiplication and g = 2 (q^(t-1) q) - 1, the fused
pass's arithmetic, and other t use ``q.pow(t)`` and ``q.pow(t - 1)`` (q^(t-1) q would be
inf * 0 at q = 0 for t < 1). ``scale`` multiplies value and slope, the slope's first factor
being the scale (the fused pass's order of products).

:func:`positive_value_and_slope` and :func:`negative_value_and_slope` are the logits of the
fused pass: r times the value, with the slope of the ``gradient`` mode.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sphereface2.heads.angular import ANGLE_EPS, continue_past_pi, joint_cosine
from sphereface2.heads.sphereface2_params import MARGIN_TYPES, SphereFace2Params


def _check_margin_type(margin_type: str) -> None:
    if margin_type not in MARGIN_TYPES:
        raise ValueError(f"margin_type must be 'C', 'A' or 'M', got {margin_type!r}")


def negative_margin(margin_type: str | SphereFace2Params, m: float | None = None) -> float:
    """The margin of the negative logits: m for C (the additive cosine margin widens both
    sides), 0 for A and M. Takes ``(params)`` or ``(margin_type, m)``."""
    if isinstance(margin_type, SphereFace2Params):
        margin_type, m = margin_type.margin_type, margin_type.m
    _check_margin_type(margin_type)
    assert m is not None
    return m if margin_type == "C" else 0.0


def similarity_adjust(
    cos: Tensor, t: float, *, with_slope: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """g(z) = 2 ((z + 1) / 2)^t - 1, mapping [-1, 1] onto itself; t = 1 is the identity.
    With ``with_slope``, (g, g') (module docstring for the arithmetic of each).

    The input is clamped to [-1, 1] first: a matmul of unit vectors can return -1 - 1e-7,
    and a negative base with a non-integer t would give NaN.
    """
    q = (cos.clamp(-1.0, 1.0) + 1.0) * 0.5
    if not with_slope:
        return 2.0 * q.pow(t) - 1.0
    if t == 1.0:
        power_minus_one = torch.ones_like(q)
    elif t == 2.0:
        power_minus_one = q
    elif t == 3.0:
        power_minus_one = q * q
    else:
        power_minus_one = q.pow(t - 1.0)
    # q^t itself for other t: q^(t-1) q would be inf * 0 at q = 0 for t < 1.
    power = power_minus_one * q if t in (1.0, 2.0, 3.0) else q.pow(t)
    g = 2.0 * power - 1.0
    inside = (cos >= -1.0) & (cos <= 1.0)
    return g, torch.where(inside, t * power_minus_one, torch.zeros_like(q))


def positive_value(
    cos_y: Tensor,
    margin_type: str,
    m: float,
    t: float,
    *,
    continued: bool = True,
    with_slope: bool = False,
    scale: float = 1.0,
) -> Tensor | tuple[Tensor, Tensor]:
    """The positive logit divided by r, without the bias (times ``scale``); A and M continued
    past pi unless ``continued`` is False (then clamped there, as published). With
    ``with_slope``, (value, d value / d cos_y)."""
    _check_margin_type(margin_type)
    if margin_type == "C":
        adjusted = similarity_adjust(cos_y, t, with_slope=with_slope)
        if not with_slope:
            return _scaled(adjusted - m, scale)
        g, g_slope = adjusted
        return _scaled(g - m, scale), scale * g_slope
    low, high = -1.0 + ANGLE_EPS, 1.0 - ANGLE_EPS
    clamped_cos = cos_y.clamp(low, high)
    theta = torch.acos(clamped_cos)
    shifted = theta + m if margin_type == "A" else theta * m
    capped = shifted.clamp(max=math.pi)
    u = torch.cos(capped)
    joint = joint_cosine(m, multiplicative=margin_type == "M")
    if not with_slope:
        value = similarity_adjust(u, t)
        if continued:
            value = continue_past_pi(cos_y, shifted, value, joint)
        return _scaled(value, scale)
    g, g_slope = similarity_adjust(u, t, with_slope=True)
    d_theta = -torch.rsqrt(1.0 - clamped_cos * clamped_cos)
    d_theta = torch.where((cos_y >= low) & (cos_y <= high), d_theta, torch.zeros_like(u))
    d_shift = 1.0 if margin_type == "A" else m
    d_u = torch.where(shifted <= math.pi, -torch.sin(capped), torch.zeros_like(u))
    slope = scale * g_slope * d_u * d_shift * d_theta
    if not continued:
        return _scaled(g, scale), slope
    value = _scaled(continue_past_pi(cos_y, shifted, g, joint), scale)
    return value, torch.where(shifted <= math.pi, slope, torch.full_like(slope, scale))


def negative_value(
    cos: Tensor,
    margin_type: str,
    m: float,
    t: float,
    *,
    with_slope: bool = False,
    scale: float = 1.0,
) -> Tensor | tuple[Tensor, Tensor]:
    """A negative logit divided by r, without the bias (times ``scale``): g(cos) plus the
    :func:`negative_margin`. With ``with_slope``, (value, d value / d cos)."""
    margin = negative_margin(margin_type, m)
    if not with_slope:
        adjusted = similarity_adjust(cos, t)
        return _scaled(adjusted + margin if margin != 0.0 else adjusted, scale)
    g, g_slope = similarity_adjust(cos, t, with_slope=True)
    return _scaled(g + margin, scale), scale * g_slope


def _scaled(value: Tensor, scale: float) -> Tensor:
    return value if scale == 1.0 else scale * value


def positive_value_and_slope(
    cos_y: Tensor, *, margin_type: str, r: float, m: float, t: float, gradient: str
) -> tuple[Tensor, Tensor]:
    """The positive logit without bias, r * v(cos_y), and its derivative in ``cos_y`` under
    the ``gradient`` mode ("detached": the constant r, and A and M clamped at pi)."""
    value, slope = positive_value(
        cos_y, margin_type, m, t, continued=gradient == "full", with_slope=True, scale=r
    )
    return value, _slope_for_mode(slope, r, gradient)


def negative_value_and_slope(
    cos: Tensor, *, margin_type: str, r: float, m: float, t: float, gradient: str
) -> tuple[Tensor, Tensor]:
    """A negative logit without bias, r * (g(cos) + m_neg), and its derivative in ``cos``."""
    value, slope = negative_value(cos, margin_type, m, t, with_slope=True, scale=r)
    return value, _slope_for_mode(slope, r, gradient)


def _slope_for_mode(slope: Tensor, r: float, gradient: str) -> Tensor:
    if gradient == "full":
        return slope
    if gradient == "detached":
        return torch.full_like(slope, r)
    raise ValueError(f"gradient must be 'full' or 'detached', got {gradient!r}")
