"""One pass over the classes, chunk by chunk: SphereFace2 loss and all its gradients.

SphereFace2 has no softmax normaliser, so the loss is a sum of independent per-entry terms
and dL/dcos of an entry depends on that entry alone. For each chunk of classes c:

    cos   = x W_c^T                                   (B, chunk)
    loss += sum of the chunk's softplus terms
    dcos  = dL/dcos, entry by entry, in closed form
    grad_x += dcos W_c        grad_W[c] = dcos^T x    grad_b += sum of dL/dlogit

and the chunk's buffers are reused for the next one, so the extra memory is a few
(B, chunk) buffers instead of several (B, K) ones. Nothing here builds an autograd graph;
:mod:`sphereface2.heads.fused_function` wraps it in a ``torch.autograd.Function``.

Every class is first scored as a negative; in the chunk that holds a sample's own class the
negative term of that entry is zeroed before the sums and its cosine gradient replaced by the
positive one, which is computed once for the whole batch from the row-wise dot product
<x_n, W_{y_n}>. The softplus and its derivative use torch's own kernels (``softplus`` and
``softplus_backward`` with threshold 20), so values and gradients follow the plain head's
``F.softplus`` exactly. The elementwise maths runs in float32 (float64 for float64 inputs)
even when the matrix products run in bfloat16/float16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sphereface2.heads.sphereface2_margins import negative_margin, positive_value_and_slope
from sphereface2.heads.sphereface2_params import SphereFace2Params

SOFTPLUS_THRESHOLD = 20.0  # F.softplus's default: above it softplus(u) = u and its slope is 1
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def LossSpec(  # noqa: N802  (the former spec class; kept for its callers)
    margin_type: str, lam: float, r: float, m: float, t: float, gradient: str
) -> SphereFace2Params:
    """The hyper-parameters of one pass: a :class:`SphereFace2Params` (``lw`` unused here)."""
    return SphereFace2Params(margin_type, lam, r, m, t, gradient=gradient)


@dataclass
class PassResult:
    """What one fused pass returns; gradients are None where not requested.

    ``loss`` is ``scale`` times the sum over the batch of the per-sample loss terms of these
    classes. ``stats`` (when asked) holds float64 sums: [cosine of the positives in range,
    cosine of all other entries, number of positives in range].
    """

    loss: Tensor
    grad_x: Tensor | None
    grad_weight: Tensor | None
    grad_bias: Tensor | None
    stats: Tensor | None


@dataclass(frozen=True)
class PassOptions:
    """Which outputs one pass computes, and how."""

    scale: float
    chunk_size: int
    need_grad_x: bool
    need_grad_weight: bool
    need_grad_bias: bool
    want_stats: bool
    matmul_dtype: torch.dtype


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Elementwise maths never runs in half precision."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def _softplus(u: Tensor, out: Tensor) -> Tensor:
    return torch.ops.aten.softplus.out(u, 1.0, SOFTPLUS_THRESHOLD, out=out)


def _scaled_sigmoid(factor: Tensor, u: Tensor, out: Tensor | None = None) -> Tensor:
    """factor * d softplus(u) / du, with the same threshold as the value."""
    if out is None:
        return torch.ops.aten.softplus_backward(factor, u, 1.0, SOFTPLUS_THRESHOLD)
    return torch.ops.aten.softplus_backward.grad_input(
        factor, u, 1.0, SOFTPLUS_THRESHOLD, grad_input=out
    )


class _Positives:
    """Positive terms of the whole batch, and their cosine gradients split by chunk."""

    def __init__(
        self,
        x: Tensor,
        weight: Tensor,
        bias: Tensor,
        positive_index: Tensor,
        spec: SphereFace2Params,
        opts: PassOptions,
    ) -> None:
        num_classes = weight.shape[0]
        index = positive_index.long()
        rows = ((index >= 0) & (index < num_classes)).nonzero().squeeze(1)
        cols = index[rows]
        cos_y = (x[rows] * weight[cols].to(x.dtype)).sum(dim=1)
        value, slope = positive_value_and_slope(
            cos_y, margin_type=spec.margin_type, r=spec.r, m=spec.m, t=spec.t,
            gradient=spec.gradient,
        )  # fmt: skip
        minus_logit = -(value + bias)
        self.loss = _softplus(minus_logit, torch.empty_like(minus_logit)).sum()
        self.cos_sum = cos_y.sum()
        self.count = rows.numel()
        # dL/dcos of the positive term is -(lam / r) sigmoid(-P) dP/dcos (times scale).
        weight_factor = torch.tensor(opts.scale * spec.lam / spec.r, dtype=x.dtype)
        sigmoid = _scaled_sigmoid(weight_factor.to(x.device), minus_logit)
        self.bias_grad = -sigmoid.sum()
        grad = -sigmoid * slope
        # Group by chunk so each chunk finds its own entries with one split.
        order = torch.argsort(cols)
        rows, cols, grad = rows[order], cols[order], grad[order]
        chunk = opts.chunk_size
        chunk_of = cols // chunk
        n_chunks = -(-num_classes // chunk)
        counts = torch.bincount(chunk_of, minlength=n_chunks).tolist()
        self.rows = rows.split(counts)
        self.cols = (cols - chunk_of * chunk).split(counts)
        self.grad = grad.split(counts)


class _Workspace:
    """(B, chunk) buffers reused by every chunk, viewed as (B, n) for a chunk of n classes."""

    def __init__(self, batch: int, chunk: int, dtype: torch.dtype, device: torch.device) -> None:
        self.batch = batch
        self.flat = [torch.empty(batch * chunk, dtype=dtype, device=device) for _ in range(4)]

    def views(self, n: int) -> list[Tensor]:
        return [buf[: self.batch * n].view(self.batch, n) for buf in self.flat]


class _NegativeLogits:
    """N = r (g(cos) + m_neg) + b for a whole chunk, and q^(t-1) for its slope: the
    negative value of :mod:`sphereface2.heads.sphereface2_margins`, in place in the
    chunk's buffers.

    With q = (cos + 1) / 2, g = 2 q^t - 1, so N = 2 r q^t + offset; for t = 3 the powers are
    two multiplications. dN/dcos = r t q^(t-1) inside [-1, 1] and 0 beyond, where g clamps.
    """

    def __init__(self, spec: SphereFace2Params, bias: Tensor, *, want_slope: bool) -> None:
        self.r, self.t = spec.r, spec.t
        self.offset = spec.r * (negative_margin(spec) - 1.0) + bias
        self.half = torch.tensor(0.5, dtype=bias.dtype, device=bias.device)
        self.want_slope = want_slope  # the full gradient needs q^(t-1) and the range mask
        # Elsewhere than on CPU clamp every chunk: a host sync per chunk would cost more.
        self.check_range = bias.device.type == "cpu"

    def __call__(
        self, cos: Tensor, q: Tensor, power: Tensor, logits: Tensor
    ) -> tuple[Tensor | None, Tensor | None]:
        """Fill ``logits``; return q^(t-1) (None when 1 or not wanted) and the range mask.

        The mask is None when every cosine lies in [-1, 1] (no clamp needed).
        """
        r, t = self.r, self.t
        torch.add(self.half, cos, alpha=0.5, out=q)
        outside = True
        if self.check_range:
            low, high = torch.aminmax(cos)
            outside = low.item() < -1.0 or high.item() > 1.0
        inside = None
        if outside:
            if self.want_slope:
                inside = (cos >= -1.0) & (cos <= 1.0)
            q.clamp_(0.0, 1.0)
        if t == 1.0:
            torch.add(self.offset, q, alpha=2.0 * r, out=logits)
            return None, inside
        if t in (2.0, 3.0):
            if t == 2.0:
                power = q
            else:
                torch.mul(q, q, out=power)
            torch.addcmul(self.offset, power, q, value=2.0 * r, out=logits)
            return (power if self.want_slope else None), inside
        # q^t itself, not q^(t-1) q: for t < 1 that would be inf * 0 at q = 0.
        torch.pow(q, t, out=logits)
        torch.add(self.offset, logits, alpha=2.0 * r, out=logits)
        if not self.want_slope:
            return None, inside
        return torch.pow(q, t - 1.0, out=power), inside


def fused_pass(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    positive_index: Tensor,
    spec: SphereFace2Params,
    opts: PassOptions,
    *,
    accumulate_into: Tensor | None = None,
    grad_factor: Tensor | None = None,
) -> PassResult:
    """Loss and requested gradients for unit-row ``x`` (B, d) against ``weight`` (K, d).

    ``positive_index`` (B,) is each sample's own class as a row of ``weight``; values outside
    [0, K) mean the positive lies elsewhere (another shard). ``bias`` is a 0-dim tensor.
    Runs without autograd; gradients are of the returned loss (already times ``opts.scale``).

    With ``accumulate_into`` (a (K, d) tensor, e.g. the proxies' existing ``.grad``) the
    proxy gradient is not returned but added into it chunk by chunk, each chunk's product
    first multiplied by ``grad_factor`` when given: the same additions, in the same order
    per element, as building the full gradient and adding it afterwards, without the
    transient (K, d) buffer.
    """
    batch, dim = x.shape
    num_classes = weight.shape[0]
    device = x.device
    wdt = work_dtype(weight.dtype)
    mmdt = opts.matmul_dtype
    direct = mmdt == wdt == weight.dtype  # products can write into the work buffers
    x_w, x_mm = x.to(wdt), x.to(mmdt)
    b = bias.detach().to(device=device, dtype=wdt)
    full = spec.gradient == "full"
    need_cos_grad = opts.need_grad_x or opts.need_grad_weight or opts.need_grad_bias

    positives = _Positives(x_w, weight, b, positive_index, spec, opts)
    negative_logits = _NegativeLogits(spec, b, want_slope=full and need_cos_grad)
    # dL/dN = scale (1 - lam) / r sigmoid(N); dN/dcos = r t q^(t-1) (full) or r (detached).
    slope_const = spec.r * spec.t if full else spec.r
    neg_factor = opts.scale * (1.0 - spec.lam) / spec.r
    sigmoid_factor = torch.tensor(neg_factor * slope_const, dtype=wdt, device=device)

    chunk = opts.chunk_size
    work = _Workspace(batch, min(chunk, num_classes), wdt, device)
    grad_x = torch.zeros(batch, dim, dtype=wdt, device=device) if opts.need_grad_x else None
    grad_w = None
    if opts.need_grad_weight and accumulate_into is None:
        grad_w = torch.empty_like(weight)
    target = accumulate_into if opts.need_grad_weight else None
    chunk_grad = None  # one chunk's proxy gradient, before it is added into ``target``
    if target is not None:
        chunk_grad = torch.empty(min(chunk, num_classes) * dim, dtype=weight.dtype, device=device)
    acc = torch.float64
    softplus_sum = torch.zeros((), dtype=acc, device=device)
    sigmoid_sum = torch.zeros((), dtype=acc, device=device)
    cos_sum = torch.zeros((), dtype=acc, device=device)

    for ci, start in enumerate(range(0, num_classes, chunk)):
        stop = min(start + chunk, num_classes)
        w_c = weight[start:stop]
        cos, q, power, logits = work.views(stop - start)
        if direct:
            torch.mm(x_w, w_c.t(), out=cos)
        else:
            w_mm = w_c.to(mmdt)
            cos.copy_(torch.mm(x_mm, w_mm.t()))
        rows, cols = positives.rows[ci], positives.cols[ci]
        has_pos = rows.numel() > 0
        if opts.want_stats:
            cos_sum += cos.sum()
            if has_pos:
                cos_sum -= cos[rows, cols].sum()

        power, inside = negative_logits(cos, q, power, logits)
        terms = _softplus(logits, out=cos)  # cos is not needed any more
        if has_pos:  # these entries are positives: their terms come from `positives`
            terms[rows, cols] = 0.0
        softplus_sum += terms.sum()
        if not need_cos_grad:
            continue
        dcos = _scaled_sigmoid(sigmoid_factor, logits, out=cos)
        if has_pos:
            dcos[rows, cols] = 0.0
        if opts.need_grad_bias:
            sigmoid_sum += dcos.sum()
        if power is not None:
            dcos.mul_(power)
        if inside is not None:
            dcos.masked_fill_(~inside, 0.0)
        if has_pos:
            dcos[rows, cols] = positives.grad[ci]
        rows_w = grad_w[start:stop] if grad_w is not None else None
        if target is not None:
            rows_w = chunk_grad[: (stop - start) * dim].view(stop - start, dim)
        if direct:
            if grad_x is not None:
                grad_x.addmm_(dcos, w_c)
            if rows_w is not None:
                torch.mm(dcos.t(), x_w, out=rows_w)
        else:
            dcos_mm = dcos.to(mmdt)
            if grad_x is not None:
                grad_x.add_(torch.mm(dcos_mm, w_mm))
            if rows_w is not None:
                rows_w.copy_(torch.mm(dcos_mm.t(), x_mm))
        if target is not None:
            if grad_factor is not None:
                rows_w.mul_(grad_factor)
            target[start:stop].add_(rows_w)

    lam, r = spec.lam, spec.r
    loss = opts.scale * ((1.0 - lam) / r * softplus_sum + lam / r * positives.loss)
    grad_b = None
    if opts.need_grad_bias:
        grad_b = (sigmoid_sum / slope_const + positives.bias_grad).to(wdt)
    stats = None
    if opts.want_stats:
        count = torch.tensor(float(positives.count), dtype=acc, device=device)
        stats = torch.stack([positives.cos_sum.to(acc), cos_sum, count])
    return PassResult(loss.to(wdt), grad_x, grad_w, grad_b, stats)
