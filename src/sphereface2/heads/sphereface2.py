"""The SphereFace2 head: K one-vs-all binary classifiers sharing one bias (ICLR 2022).

Also what a SphereFace2 head's keywords resolve to, checked: :func:`sphereface2_settings`,
and :func:`registered_settings` for a head named in the registry (the sharded head's way).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn as nn
from torch import Tensor

from sphereface2.heads.arg_checks import check_choice
from sphereface2.heads.base import ProxyHead, cosine_stats, cosines
from sphereface2.heads.fused_function import IMPLEMENTATIONS, fused_head_forward, prefer_fused
from sphereface2.heads.registry import HEADS, check_head_options
from sphereface2.heads.sphereface2_math import bias_init, chunk_loss
from sphereface2.heads.sphereface2_params import HoldsSphereFace2Params, SphereFace2Params


def sphereface2_loss(
    embeddings: Tensor,
    weight: Tensor,
    bias: Tensor | float,
    labels: Tensor,
    *,
    margin_type: str = "C",
    lam: float = 0.7,
    r: float = 40.0,
    m: float = 0.4,
    t: float = 3.0,
    lw: float = 10.0,
    gradient: str = "full",
) -> Tensor:
    """lw times the batch mean of the per-sample SphereFace2 loss (no checks, no re-projection).

    ``weight`` rows are used as given (the head keeps them unit length). This is the
    functional form of :class:`SphereFace2Head`, convenient for gradient checks.
    """
    cos = cosines(embeddings, weight)
    per_sample = chunk_loss(
        cos, labels, bias, margin_type=margin_type, lam=lam, r=r, m=m, t=t, gradient=gradient
    )
    return lw * per_sample.mean()


class HeadSettings(NamedTuple):
    """What the keywords of a SphereFace2 head resolve to, checked."""

    params: SphereFace2Params
    implementation: str
    chunk_size: int | None
    validate: bool


def sphereface2_settings(
    head: str,
    *,
    margin_type: object,
    lam: object,
    r: object,
    m: object,
    t: object,
    lw: object,
    gradient: object,
    validate: object,
    implementation: object,
    chunk_size: object,
) -> HeadSettings:
    """Check a SphereFace2 head's keywords; errors start with ``head``."""
    implementation = check_choice(head, "implementation", implementation, IMPLEMENTATIONS)
    params = SphereFace2Params.for_head(
        head, margin_type=margin_type, lam=lam, r=r, m=m, t=t, lw=lw, gradient=gradient
    )
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"{head}: chunk_size must be a positive int or None, got {chunk_size!r}")
    return HeadSettings(params, implementation, chunk_size, bool(validate))


def registered_settings(
    name: str, keywords: Mapping[str, Any]
) -> tuple[type[SphereFace2Head], HeadSettings]:
    """The SphereFace2 head class registered as ``name`` and the settings that
    ``build_head(name, K, d, **keywords)`` gives it: the same checks and errors, the
    class's defaults, and its fixed implementation where it has one."""
    head_class = HEADS.get(name)
    if not (isinstance(head_class, type) and issubclass(head_class, SphereFace2Head)):
        raise ValueError(f"head {name!r} is not a SphereFace2 head")
    check_head_options(name, keywords)
    bound = inspect.signature(head_class).bind_partial(**keywords)
    bound.apply_defaults()
    values = dict(bound.arguments)
    if head_class.fixed_implementation is not None:
        values["implementation"] = head_class.fixed_implementation
    return head_class, sphereface2_settings(head_class.head_name, **values)


@HEADS.register("sphereface2")
class SphereFace2Head(HoldsSphereFace2Params, ProxyHead):
    """SphereFace2 loss over unit class proxies ``weight`` (K, d) and one scalar ``bias``.

    Args:
        num_classes: K, at least 2 (the bias initialisation divides by K - 1).
        embedding_dim: d.
        margin_type: "C" (additive cosine, the paper's main method), "A" (additive angular)
            or "M" (multiplicative angular); see :mod:`sphereface2.heads.sphereface2_math`.
        lam: lambda in (0, 1), the weight of the positive term against the negatives.
        r: logit scale (> 0); the 1/r in front keeps the gradient size independent of r.
        m: margin. The default 0.4 is the paper's value for C; the paper uses 0.5 for A and
            1.7 for M, which configs pass explicitly. A needs m >= 0, M needs m > 0.
        t: similarity-adjustment exponent (> 0); t = 1 disables the adjustment.
        lw: loss weight multiplying the batch mean (10 in the paper's configs; not in the paper).
        gradient: "full" back-propagates through g and the margin (the newest official C
            code); "detached" gives the published loss value but the gradient of r * cos
            (older official code, and the official A and M heads). With "full", A and M
            positives whose shifted angle passes pi follow a continuation that keeps
            pulling them towards their proxy (instead of a flat clamp at pi; see
            :mod:`sphereface2.heads.sphereface2_math`); "detached" keeps the clamp, as
            its gradient pulls everywhere.
        validate: check label ranges and finiteness on every call (a host sync on GPU).
        implementation: "plain" computes the (B, K) cosines and logits with autograd;
            "fused" computes loss and gradients class-chunk by class-chunk without any
            (B, K) buffer (:mod:`sphereface2.heads.fused_function`; same values, much less
            memory, faster for large K); "auto" (default) picks fused when B * K >= 2**18
            and gradients are needed. The fused path does not support double backward.
        chunk_size: classes per chunk on the fused path (None: from a memory budget).

    The bias starts at the closed-form minimiser of the loss for features orthogonal to
    every proxy (:func:`~sphereface2.heads.sphereface2_math.bias_init`).
    """

    head_name = "sphereface2"
    fixed_implementation: ClassVar[str | None] = None
    """Set by an alias that always takes one path (the fused head's "fused")."""

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        margin_type: str = "C",
        lam: float = 0.7,
        r: float = 40.0,
        m: float = 0.4,
        t: float = 3.0,
        lw: float = 10.0,
        gradient: str = "full",
        *,
        validate: bool = True,
        implementation: str = "auto",
        chunk_size: int | None = None,
    ) -> None:
        settings = sphereface2_settings(
            self.head_name,
            margin_type=margin_type,
            lam=lam,
            r=r,
            m=m,
            t=t,
            lw=lw,
            gradient=gradient,
            validate=validate,
            implementation=implementation,
            chunk_size=chunk_size,
        )
        self.params = settings.params
        self.implementation = settings.implementation
        self.chunk_size = settings.chunk_size
        super().__init__(num_classes, embedding_dim, validate=settings.validate)
        b0 = bias_init(self.num_classes, self.params)
        self.bias = nn.Parameter(torch.tensor(b0, dtype=self.weight.dtype))

    def forward(
        self, embeddings: Tensor, labels: Tensor, *, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Scalar loss for embeddings (B, d) and labels (B,); with stats if asked.

        Stats (detached 0-dim tensors): "pos_cos", "neg_cos" (mean cosine to the own and to
        the other proxies) and "bias".
        """
        if prefer_fused(self.implementation, embeddings, self.num_classes):
            return fused_head_forward(
                self, embeddings, labels, return_stats=return_stats, chunk_size=self.chunk_size
            )
        cos = self.compute_cosines(embeddings, labels)
        per_sample = chunk_loss(cos, labels, self.bias, **self.params.maths())
        loss = self.lw * per_sample.mean()
        if not return_stats:
            return loss
        stats = cosine_stats(cos, labels)
        stats["bias"] = self.bias.detach().clone()
        return loss, stats

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, "
            f"margin_type={self.margin_type!r}, lam={self.lam:g}, r={self.r:g}, m={self.m:g}, "
            f"t={self.t:g}, lw={self.lw:g}, gradient={self.gradient!r}"
        )
