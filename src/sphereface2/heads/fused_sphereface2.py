"""The SphereFace2 head computed class-chunk by class-chunk, never holding the (B, K) logits.

Same parameters (``weight``, ``bias``), initialisation, checks, loss, gradients and stats
as :class:`~sphereface2.heads.sphereface2.SphereFace2Head`; only the computation differs
(:mod:`sphereface2.heads.fused_function`). Its extra memory is a few (B, chunk) buffers
instead of several (B, K) ones, and on CPU it runs close to the time of the three matrix
products (see benchmarks/head_speed.py).
"""

from __future__ import annotations

from torch import Tensor

from sphereface2.heads.fused_function import fused_head_forward
from sphereface2.heads.registry import HEADS
from sphereface2.heads.sphereface2 import SphereFace2Head


@HEADS.register("sphereface2_fused")
class FusedSphereFace2Head(SphereFace2Head):
    """:class:`SphereFace2Head` with the fused, chunked loss and gradient pass.

    Takes the parameters of :class:`SphereFace2Head`, plus ``chunk_size``: the number of
    classes scored at a time (None: derived from a memory budget, see
    :mod:`sphereface2.heads.memory_budget`). The forward pass precomputes the gradients,
    so run evaluation-only passes under ``torch.no_grad()``; double backward is not
    supported.
    """

    head_name = "sphereface2_fused"

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
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            num_classes,
            embedding_dim,
            margin_type,
            lam,
            r,
            m,
            t,
            lw,
            gradient,
            validate=validate,
            implementation="fused",
        )
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ValueError(
                f"{self.head_name}: chunk_size must be a positive int or None, got {chunk_size!r}"
            )
        self.chunk_size = chunk_size

    def forward(
        self, embeddings: Tensor, labels: Tensor, *, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Scalar loss for embeddings (B, d) and labels (B,); with stats if asked.

        Stats (detached 0-dim tensors): "pos_cos", "neg_cos" and "bias", as in the plain head.
        """
        return fused_head_forward(
            self, embeddings, labels, return_stats=return_stats, chunk_size=self.chunk_size
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, chunk_size={self.chunk_size}"
