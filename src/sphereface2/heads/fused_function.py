"""The fused SphereFace2 loss as an autograd function, and its functional forms.

The forward pass computes the loss and, in the same chunked pass over the classes, the
gradients with respect to the normalised features, the proxies and the bias
(:func:`sphereface2.heads.fused_chunk_loop.fused_pass`). Backward only hands them out: it
returns them as they are when the incoming gradient is 1 (the usual ``loss.backward()``),
else scales them in place. The proxy gradient is one (K, d) buffer written chunk by chunk
and released from the context before it is returned, so autograd adopts it as ``.grad``
(when ``.grad`` is None) instead of copying it: no transient second (K, d) copy.

When the proxies already have a ``.grad`` at the forward pass (every micro-batch after the
first under gradient accumulation, or after ``zero_grad(set_to_none=False)``), a returned
buffer would be a transient full (K, d) copy added into it. The forward pass then skips
the proxy gradient and the backward pass reruns the chunks for it, adding each chunk's
rows into the existing ``.grad`` in place and returning None for the proxies: bit for bit
the same sum, a (chunk, d) buffer instead of a (K, d) one, at the price of recomputing the
cosines once. (Only for a leaf ``weight`` without gradient hooks; otherwise, and when the
``.grad`` is gone by the backward pass, the buffer is returned as before.)

Costs of precomputing gradients: a forward pass that is never back-propagated still pays
for them (use ``torch.no_grad()`` for evaluation: the pass then computes the loss only),
each forward keeps its (K, d) proxy gradient until its backward, and double backward is
not supported. A second backward through the same forward (``retain_graph=True``, as
``gradcheck`` does) recomputes the pass.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from sphereface2.heads.arg_checks import check_batch, check_choice
from sphereface2.heads.base import NORM_EPS, renormalise_
from sphereface2.heads.fused_chunk_loop import (
    PassOptions,
    PassResult,
    fused_pass,
    work_dtype,
)
from sphereface2.heads.memory_budget import DEFAULT_BUDGET_BYTES, choose_chunk_size
from sphereface2.heads.sphereface2_params import SphereFace2Params

IMPLEMENTATIONS = ("auto", "plain", "fused")
AUTO_MIN_ENTRIES = 2**18
"""``implementation="auto"`` uses the fused pass from this many batch x classes entries on.

Measured on a 2-core AVX-512 CPU: below about 2^18 entries (B = 256 with K = 1024, or B = 32
with K = 8192) the plain head is as fast or faster; above, the fused one wins and the gap
grows with K.
"""


def _grad_accumulates_in_place(weight: Tensor) -> bool:
    """Whether ``weight``'s existing ``.grad`` can take its gradient in place."""
    if not weight.is_leaf or not weight.requires_grad:
        return False
    grad = weight.grad
    if grad is None or grad.layout != torch.strided or not grad.is_contiguous():
        return False
    if (grad.shape, grad.dtype, grad.device) != (weight.shape, weight.dtype, weight.device):
        return False
    hooks = getattr(weight, "_backward_hooks", None)
    post_hooks = getattr(weight, "_post_accumulate_grad_hooks", None)
    return not hooks and not post_hooks


def _weight_only(opts: PassOptions) -> PassOptions:
    return replace(
        opts, need_grad_x=False, need_grad_bias=False, need_grad_weight=True, want_stats=False
    )


def _keep_gradients(
    ctx: Any, result: PassResult, x_dtype: torch.dtype, b_dtype: torch.dtype
) -> None:
    ctx.grad_x = None if result.grad_x is None else result.grad_x.to(x_dtype)
    ctx.grad_weight = result.grad_weight
    ctx.grad_bias = None if result.grad_bias is None else result.grad_bias.to(b_dtype)
    ctx.pending = True


class _FusedSphereFace2(torch.autograd.Function):
    """loss, stats = f(x_hat, weight, bias); gradients precomputed by the forward pass."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x_hat: Tensor,
        weight: Tensor,
        bias: Tensor,
        positive_index: Tensor,
        spec: SphereFace2Params,
        opts: PassOptions,
    ) -> tuple[Tensor, Tensor]:
        # The proxies already hold a gradient: add into it in backward (module docstring).
        ctx.defer_weight = opts.need_grad_weight and _grad_accumulates_in_place(weight)
        if ctx.defer_weight:
            opts = replace(opts, need_grad_weight=False)
        result = fused_pass(x_hat, weight, bias, positive_index, spec, opts)
        _keep_gradients(ctx, result, x_hat.dtype, bias.dtype)
        # Saved (not copied) only to recompute if backward runs again (retain_graph).
        ctx.save_for_backward(x_hat, weight, bias, positive_index)
        ctx.spec, ctx.opts = spec, replace(opts, want_stats=False)
        stats = result.stats if result.stats is not None else x_hat.new_zeros(0)
        ctx.mark_non_differentiable(stats)
        return result.loss, stats

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: Tensor, _grad_stats: Tensor) -> tuple[Any, ...]:
        x_hat, weight, bias, positive_index = ctx.saved_tensors
        if not ctx.pending:  # the first backward handed the buffers out: recompute them
            result = fused_pass(x_hat, weight, bias, positive_index, ctx.spec, ctx.opts)
            _keep_gradients(ctx, result, x_hat.dtype, bias.dtype)
        grads = [ctx.grad_x, ctx.grad_weight, ctx.grad_bias]
        # Drop the context's references, so autograd may adopt the buffers as .grad.
        ctx.grad_x = ctx.grad_weight = ctx.grad_bias = None
        ctx.pending = False
        scaled = not bool(grad_loss == 1.0)
        if scaled:
            for grad in grads:
                if grad is not None:
                    grad.mul_(grad_loss.to(grad.dtype))
        if ctx.defer_weight:
            factor = grad_loss.to(weight.dtype) if scaled else None
            only_weight = _weight_only(ctx.opts)
            if _grad_accumulates_in_place(weight):
                fused_pass(
                    x_hat, weight, bias, positive_index, ctx.spec, only_weight,
                    accumulate_into=weight.grad, grad_factor=factor,
                )  # fmt: skip
            else:  # the .grad went away since the forward pass: return a fresh buffer
                grads[1] = fused_pass(
                    x_hat, weight, bias, positive_index, ctx.spec, only_weight
                ).grad_weight
                if factor is not None:
                    grads[1].mul_(factor)
        return grads[0], grads[1], grads[2], None, None, None


def _matmul_dtype(device: torch.device, weight_dtype: torch.dtype) -> torch.dtype:
    """The autocast dtype when autocast is on for this device and the proxies are float32."""
    if weight_dtype == torch.float32 and torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return weight_dtype


def fused_sphereface2_loss_sum(
    x_hat: Tensor,
    weight: Tensor,
    bias: Tensor | float,
    positive_index: Tensor,
    *,
    margin_type: str | None = None,
    lam: float | None = None,
    r: float | None = None,
    m: float | None = None,
    t: float | None = None,
    gradient: str = "full",
    scale: float = 1.0,
    chunk_size: int | None = None,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    return_stats: bool = False,
    params: SphereFace2Params | None = None,
) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """``scale`` times the batch sum of the per-sample loss terms of the classes in ``weight``.

    Same value and gradients as ``scale * chunk_loss(x_hat @ weight.T, positive_index, bias,
    ...).sum()`` (:func:`sphereface2.heads.sphereface2_math.chunk_loss`), without building
    the (B, K) cosines: ``x_hat`` (B, d) are unit-length features (normalise them outside,
    with autograd), ``weight`` (K, d) unit-length proxies used as given, ``bias`` the
    shared scalar, and ``positive_index`` (B,) each sample's own class as a row of
    ``weight``: any value outside [0, K) means the positive lives elsewhere (another shard),
    so only negative terms of these classes count for that sample.

    ``scale`` multiplies the loss and every gradient inside the pass; pass the final factor
    (e.g. ``lw / global_batch``) so that backward receives a gradient of 1 and returns the
    buffers without touching them. ``chunk_size`` classes are scored at a time (default:
    from ``budget_bytes``, see :mod:`sphereface2.heads.memory_budget`). Under autocast
    the matrix products run in the autocast dtype, the elementwise maths in float32.

    ``params`` (a :class:`SphereFace2Params`) may replace the hyper-parameter keywords.
    With ``return_stats`` also returns detached float64 sums: "pos_cos_sum" (cosines of the
    positives in range), "neg_cos_sum" (all other cosines) and "num_positives".
    """
    if params is None:  # the keywords; ``params`` (a head's) replaces them all
        params = SphereFace2Params.for_head(
            "fused sphereface2", margin_type=margin_type, lam=lam, r=r, m=m, t=t, gradient=gradient
        )
    if x_hat.dim() != 2 or weight.dim() != 2 or x_hat.shape[1] != weight.shape[1]:
        raise ValueError(
            f"fused sphereface2: x_hat (B, d) and weight (K, d) must agree in d, got "
            f"{tuple(x_hat.shape)} and {tuple(weight.shape)}"
        )
    if positive_index.shape != (x_hat.shape[0],):
        raise ValueError(
            f"fused sphereface2: positive_index must have shape ({x_hat.shape[0]},), "
            f"got {tuple(positive_index.shape)}"
        )
    if not isinstance(bias, Tensor):
        bias = torch.tensor(float(bias), dtype=weight.dtype, device=weight.device)
    x_hat = x_hat.to(weight.dtype)
    batch, num_classes = x_hat.shape[0], weight.shape[0]
    mmdt = _matmul_dtype(x_hat.device, weight.dtype)
    chunk = choose_chunk_size(
        num_classes,
        batch,
        embedding_dim=weight.shape[1],
        work_itemsize=work_dtype(weight.dtype).itemsize,
        matmul_itemsize=mmdt.itemsize,
        budget_bytes=budget_bytes,
        chunk_size=chunk_size,
    )
    grad_on = torch.is_grad_enabled()
    opts = PassOptions(
        scale=float(scale),
        chunk_size=chunk,
        need_grad_x=grad_on and x_hat.requires_grad,
        need_grad_weight=grad_on and weight.requires_grad,
        need_grad_bias=grad_on and bias.requires_grad,
        want_stats=return_stats,
        matmul_dtype=mmdt,
    )
    spec = params
    with torch.autocast(x_hat.device.type, enabled=False):
        if opts.need_grad_x or opts.need_grad_weight or opts.need_grad_bias:
            loss, stats = _FusedSphereFace2.apply(x_hat, weight, bias, positive_index, spec, opts)
        else:
            result = fused_pass(x_hat, weight, bias, positive_index, spec, opts)
            loss, stats = result.loss, result.stats
    if not return_stats:
        return loss
    names = ("pos_cos_sum", "neg_cos_sum", "num_positives")
    return loss, {name: stats[i] for i, name in enumerate(names)}


def fused_sphereface2_loss(
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
    chunk_size: int | None = None,
) -> Tensor:
    """Fused counterpart of :func:`sphereface2.heads.sphereface2.sphereface2_loss`.

    lw times the batch mean of the per-sample loss; embeddings are normalised here (with
    autograd), ``weight`` rows are used as given.
    """
    x_hat = F.normalize(embeddings.to(weight.dtype), dim=1, eps=NORM_EPS)
    return fused_sphereface2_loss_sum(  # type: ignore[return-value]
        x_hat,
        weight,
        bias,
        labels,
        margin_type=margin_type,
        lam=lam,
        r=r,
        m=m,
        t=t,
        gradient=gradient,
        scale=lw / embeddings.shape[0],
        chunk_size=chunk_size,
    )


def prefer_fused(implementation: str, embeddings: object, num_classes: int) -> bool:
    """Whether a SphereFace2 head with this ``implementation`` setting takes the fused path.

    "plain" never, "fused" always, "auto" when batch x classes reaches
    :data:`AUTO_MIN_ENTRIES`. Anything but a 2-D tensor goes to the plain path under "auto",
    whose checks then name the problem.
    """
    check_choice("sphereface2", "implementation", implementation, IMPLEMENTATIONS)
    if implementation == "auto":
        if not isinstance(embeddings, Tensor) or embeddings.dim() != 2:
            return False
        return embeddings.shape[0] * num_classes >= AUTO_MIN_ENTRIES
    return implementation == "fused"


def fused_head_forward(
    head: Any,
    embeddings: Tensor,
    labels: Tensor,
    *,
    return_stats: bool = False,
    chunk_size: int | None = None,
) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """The forward pass of a :class:`~sphereface2.heads.sphereface2.SphereFace2Head`, fused.

    Same checks, proxy re-projection, loss, gradients and stats as the head's own forward.
    """
    check_batch(
        head.head_name,
        embeddings,
        labels,
        num_classes=head.num_classes,
        embedding_dim=head.embedding_dim,
        check_values=head.validate,
    )
    renormalise_(head.weight)
    x_hat = F.normalize(embeddings.to(head.weight.dtype), dim=1, eps=NORM_EPS)
    batch = embeddings.shape[0]
    out = fused_sphereface2_loss_sum(
        x_hat,
        head.weight,
        head.bias,
        labels,
        params=head.params,
        scale=head.lw / batch,
        chunk_size=chunk_size,
        return_stats=return_stats,
    )
    if not return_stats:
        return out
    loss, sums = out
    stats = {
        "pos_cos": (sums["pos_cos_sum"] / batch).to(loss.dtype),
        "neg_cos": (sums["neg_cos_sum"] / (batch * (head.num_classes - 1))).to(loss.dtype),
        "bias": head.bias.detach().clone(),
    }
    return loss, stats
