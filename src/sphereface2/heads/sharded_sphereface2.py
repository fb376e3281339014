"""SphereFace2 sharded by class range: no normaliser, only scalars cross ranks in forward."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sphereface2.distributed.collectives import global_sum
from sphereface2.heads.base import NORM_EPS, cosines, renormalise_
from sphereface2.heads.fused_function import prefer_fused
from sphereface2.heads.sharded_base import ShardedHead, cosine_sums
from sphereface2.heads.sphereface2 import registered_settings
from sphereface2.heads.sphereface2_math import bias_init, chunk_loss
from sphereface2.heads.sphereface2_params import HoldsSphereFace2Params, SphereFace2Params

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup


class ShardedSphereFace2Head(HoldsSphereFace2Params, ShardedHead):
    """SphereFace2 with the proxies split by class range; same loss and gradients.

    Parameters: ``weight`` (this rank's K_local x d unit proxies) and ``bias`` (the shared
    scalar, replicated: same closed-form init from the GLOBAL class count on every rank;
    its gradient is summed over ranks inside the backward, so it stays identical).

    Each rank scores the whole gathered batch against its own classes (positive terms only
    for labels in its range, negative terms for every other sample) and scales the sum by
    lw / global batch; the sum of these partial losses over ranks is the plain head's loss.
    The per-class terms come from the plain head's maths:
    :func:`~sphereface2.heads.sphereface2_math.chunk_loss` for ``name="sphereface2"``, or
    the chunked pass of the fused head for ``name="sphereface2_fused"`` or when the plain
    head's ``implementation`` ("auto" by default) picks it for (global batch x K_local)
    (the chunked pass never holds the (B, K_local) cosines; ``chunk_size`` is honoured).

    Args: those of the plain head ``name``, plus ``group`` (None: the default group, or a
    single process), ``init`` ("full" or "shard", see :func:`init_proxy_rows`) and ``seed``
    (the proxy init's seed).
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        group: ProcessGroup | None = None,
        *,
        name: str = "sphereface2",
        init: str = "full",
        seed: int = 0,
        **params: Any,
    ) -> None:
        head_class, settings = registered_settings(name, params)
        super().__init__(
            head_class.head_name,
            num_classes,
            embedding_dim,
            group,
            validate=settings.validate,
            init=init,
            seed=seed,
            renormalise=True,
        )
        self.params: SphereFace2Params = settings.params
        # "auto" | "plain" | "fused" of the plain head: decided per call on this rank's
        # (global batch x local classes), as the plain head decides on (B x K).
        self.implementation = settings.implementation
        self.chunk_size = settings.chunk_size
        self.fused = head_class.fixed_implementation == "fused"  # built as the fused alias
        b0 = bias_init(self.num_classes, self.params)
        self.bias = nn.Parameter(torch.tensor(b0, dtype=self.weight.dtype))

    def _maths(self) -> dict[str, Any]:
        return self.params.maths()

    def _plain_partial(
        self, x: Tensor, y: Tensor, bias: Tensor, stats: bool
    ) -> tuple[Tensor, Tensor | None]:
        """This rank's share of the loss and, if asked, its (positive, other) cosine sums."""
        cos = cosines(x, self.weight)
        batch = x.shape[0]
        if self.world_size == 1:
            partial = self.lw * chunk_loss(cos, y, bias, **self._maths()).mean()
        elif self.num_local_classes == 0:
            # An empty shard adds 0 but stays in the graph, so that this rank's backward
            # runs the same collectives as everyone else's.
            partial = cos.sum()
        else:
            per_sample = chunk_loss(cos, y - self.class_start, bias, **self._maths())
            partial = self.lw * per_sample.sum() / batch
        if not stats:
            return partial, None
        with torch.no_grad():
            positive, total = cosine_sums(cos.detach(), *self.positive_columns(y))
            return partial, torch.stack([positive, total - positive])

    def _fused_partial(
        self, x: Tensor, y: Tensor, bias: Tensor, stats: bool
    ) -> tuple[Tensor, Tensor | None]:
        """As :meth:`_plain_partial`, through the fused head's chunked pass."""
        from sphereface2.heads.fused_function import fused_sphereface2_loss_sum

        x_hat = F.normalize(x.to(self.weight.dtype), dim=1, eps=NORM_EPS)
        if self.num_local_classes == 0:  # the fused pass needs at least one class
            partial = x_hat.sum() * 0.0 + self.weight.sum()
            return partial, (x_hat.new_zeros(2) if stats else None)
        out = fused_sphereface2_loss_sum(
            x_hat,
            self.weight,
            bias,
            y.long() - self.class_start,
            scale=self.lw / x.shape[0],
            chunk_size=self.chunk_size,
            return_stats=stats,
            params=self.params,
        )
        if not stats:
            return out, None  # type: ignore[return-value]
        partial, sums = out
        return partial, torch.stack([sums["pos_cos_sum"], sums["neg_cos_sum"]]).to(x_hat.dtype)

    def forward(
        self, embeddings: Tensor, labels: Tensor, *, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The plain head's loss on the global batch; stats "pos_cos", "neg_cos", "bias"."""
        x, y, (bias,) = self.gather_batch(embeddings, labels, (self.bias,))
        renormalise_(self.weight)
        fused = prefer_fused(self.implementation, x, self.num_local_classes)
        compute = self._fused_partial if fused else self._plain_partial
        partial, sums = compute(x, y, bias, return_stats)
        loss = global_sum(partial, self.group)
        if sums is None:
            return loss
        with torch.no_grad():
            batch = x.shape[0]
            sums = global_sum(sums, self.group)
            stats = {
                "pos_cos": sums[0] / batch,
                "neg_cos": sums[1] / (batch * (self.num_classes - 1)),
                "bias": self.bias.detach().clone(),
            }
        return loss, stats

    def extra_repr(self) -> str:
        fused = f", fused=True, chunk_size={self.chunk_size}" if self.fused else ""
        return (
            f"{super().extra_repr()}, margin_type={self.margin_type!r}, lam={self.lam:g}, "
            f"r={self.r:g}, m={self.m:g}, t={self.t:g}, lw={self.lw:g}, "
            f"gradient={self.gradient!r}, init={self.init!r}{fused}"
        )
