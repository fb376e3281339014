"""The SphereFace2 loss as pure functions of cosines (no modules, no state): the logits
with their gradient mode, the loss of a chunk of classes, and the bias initialisation.

Per sample with label y, over classes i (SphereFace2, Wen et al., ICLR 2022; official code
in OpenSphere):

    L = lam / r * softplus(-P(cos_y)) + (1 - lam) / r * sum_{i != y} softplus(N(cos_i))

with positive logit P and negative logit N depending on the margin type:

    C:  P = r * (g(cos_y) - m) + b                  N = r * (g(cos_i) + m) + b
    A:  P = r * g(cos(min(theta_y + m, pi))) + b    N = r * g(cos_i) + b
    M:  P = r * g(cos(min(m * theta_y, pi))) + b    N = r * g(cos_i) + b

    g(z) = 2 * ((z + 1) / 2)^t - 1,   theta = arccos(cos)   (see angular.ANGLE_EPS)

P / r and N / r without the bias (the margin functions) are defined once, for this module
and the fused pass, in :mod:`sphereface2.heads.sphereface2_margins`.

A and M as published are flat (P = -r + b) once the shifted angle passes pi, i.e. for
theta_y beyond theta0 = pi - m (A) or pi / m (M, m > 1); with the full gradient such a
positive got no pull towards its proxy. With ``gradient="full"`` the positive logit
therefore continues past theta0 as

    P = r * (cos_y - cos theta0 - 1) + b

continuous at theta0 (both sides -r + b) and strictly decreasing up to theta = pi, with the
detached gradient's slope r; why this continuation, and not one inside g, is explained in
:mod:`sphereface2.heads.angular`. ``"detached"`` keeps the published clamped value, as the
official A and M heads do (their gradient r * cos_y pulls everywhere).

Every classifier's gradient depends only on its own logit, so the loss of a batch is a sum
of independent terms over classes. :func:`chunk_loss` computes that sum for any contiguous
range of classes, which is what a class-sharded or chunked head needs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from sphereface2.heads.angular import joint_cosine, scaled_with_gradient
from sphereface2.heads.sphereface2_margins import (
    negative_margin,
    negative_value,
    positive_value,
    similarity_adjust,
)
from sphereface2.heads.sphereface2_params import MARGIN_TYPES, SphereFace2Params

__all__ = ["bias_init", "chunk_loss", "negative_logit", "positive_logit", "similarity_adjust"]


# Looked up at call time by positive_logit, so a test can swap in another positive value.
_positive_value = positive_value


def positive_logit(
    cos_y: Tensor,
    bias: Tensor | float,
    *,
    margin_type: str,
    r: float,
    m: float,
    t: float,
    gradient: str = "full",
) -> Tensor:
    """Logit of each sample's own classifier; ``gradient="detached"`` back-propagates r * cos.

    With ``"full"`` A and M are continued past pi (module docstring); ``"detached"`` keeps
    their published clamped value.
    """
    continued = gradient == "full"
    value = scaled_with_gradient(
        cos_y, lambda c: _positive_value(c, margin_type, m, t, continued=continued), r, gradient
    )
    return value + bias


def negative_logit(
    cos: Tensor,
    bias: Tensor | float,
    *,
    margin_type: str,
    r: float,
    m: float,
    t: float,
    gradient: str = "full",
) -> Tensor:
    """Logits of the other classifiers (any shape); ``"detached"`` back-propagates r * cos."""
    value = scaled_with_gradient(cos, lambda c: negative_value(c, margin_type, m, t), r, gradient)
    return value + bias


def chunk_loss(
    cos: Tensor,
    positive_index: Tensor,
    bias: Tensor | float,
    *,
    margin_type: str,
    lam: float,
    r: float,
    m: float,
    t: float,
    gradient: str = "full",
) -> Tensor:
    """Per-sample loss contributed by a chunk of C classes; returns shape (B,).

    ``cos`` is (B, C): the cosines of the batch to the chunk's proxies. ``positive_index``
    is (B,) integer: the column of each sample's own class in the chunk, or any value
    outside [0, C) when its class lies in another chunk. Summing the results over chunks
    that cover all classes gives the per-sample loss L (without lw).

    Every column is first scored as a negative; for samples whose positive is in the chunk
    that column's negative term is then subtracted again and the positive term added. This
    needs only (B,) extra memory instead of a (B, C) mask, and the two gradient
    contributions to the label column cancel exactly.
    """
    num_cols = cos.shape[1]
    negative_terms = F.softplus(
        negative_logit(cos, bias, margin_type=margin_type, r=r, m=m, t=t, gradient=gradient)
    )
    has_positive = (positive_index >= 0) & (positive_index < num_cols)
    column = torch.where(has_positive, positive_index, 0).long().unsqueeze(1)
    negative_at_label = negative_terms.gather(1, column).squeeze(1)
    negative_sum = negative_terms.sum(dim=1) - torch.where(
        has_positive, negative_at_label, negative_at_label.new_zeros(())
    )

    cos_y = cos.gather(1, column).squeeze(1)
    positive_terms = F.softplus(
        -positive_logit(cos_y, bias, margin_type=margin_type, r=r, m=m, t=t, gradient=gradient)
    )
    positive_terms = torch.where(has_positive, positive_terms, positive_terms.new_zeros(()))
    return (lam / r) * positive_terms + ((1.0 - lam) / r) * negative_sum


def _logaddexp(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow; either argument may be -inf."""
    high, low = max(a, b), min(a, b)
    if high == -math.inf:
        return -math.inf
    return high + math.log1p(math.exp(low - high))


def bias_init(
    num_classes: int,
    margin_type: str | SphereFace2Params,
    lam: float | None = None,
    r: float | None = None,
    m: float | None = None,
    t: float | None = None,
    gradient: str = "full",
) -> float:
    """The bias b0 minimising the initial loss when every cosine is 0 (float64 closed form).

    At cos = 0 every negative logit is a_i + b and the positive logit a_y + b, with
    a_i = r * (g(0) + m_neg) and a_y = r * g(cos theta_y0) - r * m_pos
    (theta_y0 = pi/2 for C, min(pi, pi/2 + m) for A, min(pi, m pi / 2) for M). Only when
    the shifted right angle passes pi (A with m > pi/2, M with m > 2) does ``gradient``
    matter: "full" then uses the continued value a_y = r * (0 - cos theta0 - 1).
    Setting dL/db = 0 gives a quadratic in v = exp(a_i + b) with z = lam / ((1-lam)(K-1)):

        exp(a_y - a_i) v^2 + (1 - z) v - z = 0,
        b0 = log(2 z) - a_i - log(1 - z + sqrt((1 - z)^2 + 4 z exp(a_y - a_i))).

    Evaluated in log space so that neither a large a_y - a_i (M with m < 1) nor z > 1
    (few classes, large lambda) overflows or cancels.

    Takes ``bias_init(K, params)`` with a :class:`SphereFace2Params`, or the numbers
    ``bias_init(K, margin_type, lam, r, m, t, gradient)``.
    """
    if isinstance(margin_type, SphereFace2Params):
        p = margin_type
        margin_type, lam, r, m, t, gradient = p.margin_type, p.lam, p.r, p.m, p.t, p.gradient
    assert lam is not None and r is not None and m is not None and t is not None
    if num_classes < 2:
        raise ValueError(f"bias_init needs num_classes >= 2, got {num_classes}")
    if not 0.0 < lam < 1.0:
        raise ValueError(f"bias_init needs 0 < lam < 1, got {lam}")

    def g(z: float) -> float:
        return 2.0 * ((z + 1.0) / 2.0) ** t - 1.0

    if gradient not in ("full", "detached"):
        raise ValueError(f"gradient must be 'full' or 'detached', got {gradient!r}")
    if margin_type == "C":
        a_y = r * (g(0.0) - m)
    elif margin_type in ("A", "M"):
        multiplicative = margin_type == "M"
        shifted = m * math.pi / 2.0 if multiplicative else math.pi / 2.0 + m
        if shifted <= math.pi or gradient == "detached":
            a_y = r * g(math.cos(min(math.pi, shifted)))
        else:  # the continuation past pi at cos_y = 0
            a_y = r * (-joint_cosine(m, multiplicative=multiplicative) - 1.0)
    else:
        raise ValueError(f"margin_type must be one of {MARGIN_TYPES}, got {margin_type!r}")
    a_i = r * (g(0.0) + negative_margin(margin_type, m))

    z = lam / ((1.0 - lam) * (num_classes - 1))
    d = a_y - a_i
    one_minus_z = 1.0 - z
    log_abs = math.log(abs(one_minus_z)) if one_minus_z != 0.0 else -math.inf
    log_sqrt = 0.5 * _logaddexp(2.0 * log_abs, math.log(4.0 * z) + d)
    if one_minus_z >= 0.0:
        # v = 2z / (1 - z + sqrt(...)): a sum of non-negative terms in the denominator.
        log_v = math.log(2.0 * z) - _logaddexp(log_abs, log_sqrt)
    else:
        # v = (sqrt(...) + z - 1) / (2 exp(d)): again a sum of positive terms.
        log_v = _logaddexp(log_sqrt, log_abs) - math.log(2.0) - d
    return log_v - a_i
