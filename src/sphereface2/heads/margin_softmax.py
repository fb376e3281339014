"""Softmax cross-entropy baselines of the paper's comparison, with the SphereFace2 call signature.

``softmax``: a plain linear layer with bias. The others score normalised embeddings against
unit proxies (re-projected in place every forward, as in :mod:`sphereface2.heads.base`)
with logits ``s * cos`` and change only the target class's logit:

    normface    s * cos_y
    cosface     s * (cos_y - m)
    arcface     s * cos(theta_y + m), for theta_y > pi - m continued as s * (cos_y + cos m - 1)
    sphereface  s * psi(theta_y),  psi(theta) = (-1)^k cos(m theta) - 2k,  k = floor(m theta / pi)

Every target logit is strictly decreasing in theta_y on the whole [0, pi], so a sample is
pulled towards its proxy from any start. ArcFace's published cos(min(theta_y + m, pi)) is
flat past pi - m and, with the full gradient, left samples there with no pull at all; the
continuation and why it was chosen (against arcface_torch's cos - m sin m) are in
:mod:`sphereface2.heads.angular`. SphereFace's psi needs none: each piece is decreasing and
the pieces join, so psi falls from 1 to (-1)^k cos(m pi) - 2k with zero slope only at the
isolated seams theta = k pi / m.

Defaults follow the paper's comparison (s = 30; CosFace m 0.35, ArcFace m 0.5, SphereFace
m 1.5); OpenSphere's class defaults use s = 64 for CosFace and ArcFace.

Every head here takes ``sample_rate`` in (0, 1] (default 1: exact) and ``sample_seed``:
below 1, training forwards take the cross-entropy over a sample of the classes, as
arcface_torch's Partial FC (:mod:`sphereface2.heads.class_sampling`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sphereface2.heads.angular import (
    angle,
    continue_past_pi,
    joint_cosine,
    scaled_with_gradient,
)
from sphereface2.heads.arg_checks import (
    GRADIENT_MODES,
    check_batch,
    check_choice,
    check_number,
    check_sizes,
)
from sphereface2.heads.base import ProxyHead, cosine_stats, cosines, renormalise_
from sphereface2.heads.class_sampling import ClassSampling, check_sample_rate, check_sample_seed
from sphereface2.heads.registry import HEADS


def margin_cross_entropy(
    cos: Tensor, labels: Tensor, s: float, target_logit: Callable[[Tensor], Tensor]
) -> Tensor:
    """Mean cross-entropy of logits ``s * cos`` whose label column is ``target_logit(cos_y)``."""
    index = labels.long().unsqueeze(1)
    cos_y = cos.gather(1, index).squeeze(1)
    logits = (s * cos).scatter(1, index, target_logit(cos_y).unsqueeze(1))
    return F.cross_entropy(logits, labels.long())


def arcface_value(cos_y: Tensor, m: float, *, continued: bool = True) -> Tensor:
    """cos(theta_y + m) up to theta_y = pi - m; beyond, cos_y + cos m - 1 if ``continued``,
    else the published clamp cos(pi) = -1 (see :mod:`sphereface2.heads.angular`)."""
    shifted = angle(cos_y) + m
    clamped = torch.cos(shifted.clamp(max=math.pi))
    if not continued:
        return clamped
    return continue_past_pi(cos_y, shifted, clamped, joint_cosine(m, multiplicative=False))


def arcface_target(cos_y: Tensor, s: float, m: float, gradient: str = "full") -> Tensor:
    """s * cos(theta_y + m), strictly decreasing in theta_y on all of [0, pi].

    ``"full"`` differentiates the continued value (:func:`arcface_value`), so a sample past
    pi - m is still pulled with slope s per unit cosine. ``"detached"`` is OpenSphere's
    head exactly: the published clamped value s * cos(min(theta_y + m, pi)) with the
    gradient of s * cos_y, which pulls everywhere.
    """
    return scaled_with_gradient(
        cos_y, lambda c: arcface_value(c, m, continued=gradient == "full"), s, gradient
    )


def sphereface_psi(theta: Tensor, m: float) -> Tensor:
    """psi(theta) = (-1)^k cos(m theta) - 2k for theta in [k pi / m, (k+1) pi / m].

    The SphereFace extension of cos(m theta): continuous and strictly decreasing on [0, pi].
    """
    k = torch.floor(m * theta / math.pi).detach()
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * torch.cos(m * theta) - 2.0 * k


def sphereface_target(cos_y: Tensor, s: float, m: float, gradient: str = "detached") -> Tensor:
    """s * psi(theta_y); ``"detached"`` is SphereFace-R's characteristic gradient detachment:
    the value is s * psi(theta_y) but the gradient is that of s * cos_y."""
    return scaled_with_gradient(cos_y, lambda c: sphereface_psi(angle(c), m), s, gradient)


class MarginSoftmaxHead(ProxyHead, ClassSampling):
    """Cross-entropy over ``s * cos`` to unit proxies; subclasses change the target logit.

    ``sample_rate`` < 1 takes the cross-entropy over a sample of the classes in training
    mode (Partial FC, :mod:`sphereface2.heads.class_sampling`), drawn from ``sample_seed``.
    """

    head_name = "margin_softmax"

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        s: float = 30.0,
        *,
        validate: bool = True,
        sample_rate: float = 1.0,
        sample_seed: int = 0,
    ) -> None:
        self.s = check_number(self.head_name, "s", s, low=0.0)
        rate = check_sample_rate(self.head_name, sample_rate)
        seed = check_sample_seed(self.head_name, sample_seed)
        super().__init__(num_classes, embedding_dim, validate=validate)
        self.setup_class_sampling(rate, seed)

    def target_logit(self, cos_y: Tensor) -> Tensor:
        """The label column's logit given the cosine to the own proxy (NormFace: no margin)."""
        return self.s * cos_y

    def forward(
        self, embeddings: Tensor, labels: Tensor, *, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Scalar mean cross-entropy; stats "pos_cos", "neg_cos", "accuracy" if asked
        (over the sampled classes when sampling)."""
        if self.samples_classes:
            cos, labels = self._sampled_cosines(embeddings, labels)
        else:
            cos = self.compute_cosines(embeddings, labels)
        loss = margin_cross_entropy(cos, labels, self.s, self.target_logit)
        if not return_stats:
            return loss
        stats = cosine_stats(cos, labels)
        stats["accuracy"] = _accuracy(cos, labels)
        return loss, stats

    def _sampled_cosines(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S) cosines to this forward's sampled proxies, and the labels as columns."""
        self.check_inputs(embeddings, labels)
        classes = self.draw_classes(labels, self.num_classes)
        renormalise_(self.weight)  # every row, so an unsampled proxy stays unit length
        columns = torch.searchsorted(classes, labels.long())
        return cosines(embeddings, self.weight[classes]), columns

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, "
            f"{self._margin_repr()}{self.sampling_repr()}"
        )

    def _margin_repr(self) -> str:
        return f"s={self.s:g}"


@HEADS.register("normface")
class NormFaceHead(MarginSoftmaxHead):
    """NormFace / CocoLoss: softmax over s * cos, no margin."""

    head_name = "normface"


@HEADS.register("cosface")
class CosFaceHead(MarginSoftmaxHead):
    """CosFace (additive cosine margin): target logit s * (cos_y - m), m >= 0."""

    head_name = "cosface"

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        s: float = 30.0,
        m: float = 0.35,
        *,
        validate: bool = True,
        sample_rate: float = 1.0,
        sample_seed: int = 0,
    ) -> None:
        self.m = check_number(self.head_name, "m", m, low=0.0, low_inclusive=True)
        super().__init__(
            num_classes,
            embedding_dim,
            s,
            validate=validate,
            sample_rate=sample_rate,
            sample_seed=sample_seed,
        )

    def target_logit(self, cos_y: Tensor) -> Tensor:
        return self.s * (cos_y - self.m)

    def _margin_repr(self) -> str:
        return f"s={self.s:g}, m={self.m:g}"


@HEADS.register("arcface")
class ArcFaceHead(MarginSoftmaxHead):
    """ArcFace (additive angular margin): target logit s * cos(theta_y + m).

    0 <= m < pi. See :func:`arcface_target` for the continuation past theta_y = pi - m and
    the gradient modes: the default "full" differentiates the (continued) margin,
    "detached" is OpenSphere's head (the official code behind the paper's comparison).
    """

    head_name = "arcface"

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        s: float = 30.0,
        m: float = 0.5,
        gradient: str = "full",
        *,
        validate: bool = True,
        sample_rate: float = 1.0,
        sample_seed: int = 0,
    ) -> None:
        self.m = check_number(self.head_name, "m", m, low=0.0, high=math.pi, low_inclusive=True)
        self.gradient = check_choice(self.head_name, "gradient", gradient, GRADIENT_MODES)
        super().__init__(
            num_classes,
            embedding_dim,
            s,
            validate=validate,
            sample_rate=sample_rate,
            sample_seed=sample_seed,
        )

    def target_logit(self, cos_y: Tensor) -> Tensor:
        return arcface_target(cos_y, self.s, self.m, self.gradient)

    def _margin_repr(self) -> str:
        return f"s={self.s:g}, m={self.m:g}, gradient={self.gradient!r}"


@HEADS.register("sphereface")
class SphereFaceHead(MarginSoftmaxHead):
    """SphereFace in the SphereFace-R form: target logit s * psi(theta_y), m > 0.

    The default ``gradient="detached"`` back-propagates s * cos_y through the target (the
    form the paper's baseline used); "full" differentiates psi.
    """

    head_name = "sphereface"

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        s: float = 30.0,
        m: float = 1.5,
        gradient: str = "detached",
        *,
        validate: bool = True,
        sample_rate: float = 1.0,
        sample_seed: int = 0,
    ) -> None:
        self.m = check_number(self.head_name, "m", m, low=0.0)
        self.gradient = check_choice(self.head_name, "gradient", gradient, GRADIENT_MODES)
        super().__init__(
            num_classes,
            embedding_dim,
            s,
            validate=validate,
            sample_rate=sample_rate,
            sample_seed=sample_seed,
        )

    def target_logit(self, cos_y: Tensor) -> Tensor:
        return sphereface_target(cos_y, self.s, self.m, self.gradient)

    def _margin_repr(self) -> str:
        return f"s={self.s:g}, m={self.m:g}, gradient={self.gradient!r}"


@HEADS.register("softmax")
class SoftmaxHead(nn.Module, ClassSampling):
    """Plain softmax: cross-entropy of ``embeddings @ weight.T + bias``, nothing normalised.

    ``weight`` (K, d) is Xavier-normal initialised and ``bias`` (K,) zero, as in OpenSphere.
    Stats "pos_cos"/"neg_cos" are cosines to the raw weight rows; "accuracy" uses the logits.
    ``sample_rate``/``sample_seed``: Partial FC, as for :class:`MarginSoftmaxHead`.
    """

    head_name = "softmax"

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        validate: bool = True,
        sample_rate: float = 1.0,
        sample_seed: int = 0,
    ) -> None:
        rate = check_sample_rate(self.head_name, sample_rate)
        seed = check_sample_seed(self.head_name, sample_seed)
        super().__init__()
        self.num_classes, self.embedding_dim = check_sizes(
            self.head_name, num_classes, embedding_dim
        )
        self.validate = bool(validate)
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.embedding_dim))
        self.bias = nn.Parameter(torch.zeros(self.num_classes))
        nn.init.xavier_normal_(self.weight)
        self.setup_class_sampling(rate, seed)

    def forward(
        self, embeddings: Tensor, labels: Tensor, *, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Scalar mean cross-entropy; stats "pos_cos", "neg_cos", "accuracy" if asked."""
        check_batch(
            self.head_name,
            embeddings,
            labels,
            num_classes=self.num_classes,
            embedding_dim=self.embedding_dim,
            check_values=self.validate,
        )
        weight, bias = self.weight, self.bias
        if self.samples_classes:
            classes = self.draw_classes(labels, self.num_classes)
            weight, bias = weight[classes], bias[classes]
            labels = torch.searchsorted(classes, labels.long())
        logits = F.linear(embeddings.to(weight.dtype), weight, bias)
        loss = F.cross_entropy(logits, labels.long())
        if not return_stats:
            return loss
        with torch.no_grad():
            unit_weight = F.normalize(weight.detach(), dim=1)
            stats = cosine_stats(cosines(embeddings.detach(), unit_weight), labels)
            stats["accuracy"] = _accuracy(logits, labels)
        return loss, stats

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}"
            f"{self.sampling_repr()}"
        )


def _accuracy(scores: Tensor, labels: Tensor) -> Tensor:
    """Detached fraction of samples whose highest score is at their label."""
    with torch.no_grad():
        return (scores.argmax(dim=1) == labels).float().mean()
