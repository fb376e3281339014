"""``sphereface2_fused``: the SphereFace2 head registered with ``implementation="fused"`` fixed.

Same parameters (``weight``, ``bias``), initialisation, checks, loss, gradients and stats
as :class:`~sphereface2.heads.sphereface2.SphereFace2Head`; only the computation differs
(:mod:`sphereface2.heads.fused_function`). Its extra memory is a few (B, chunk) buffers
instead of several (B, K) ones, and on CPU it runs close to the time of the three matrix
products (see benchmarks/head_speed.py).
"""

from __future__ import annotations

import inspect
from typing import Any

from sphereface2.heads.registry import HEADS
from sphereface2.heads.sphereface2 import SphereFace2Head


def _without_implementation(signature: inspect.Signature) -> inspect.Signature:
    kept = [p for p in signature.parameters.values() if p.name != "implementation"]
    return signature.replace(parameters=kept)


@HEADS.register("sphereface2_fused")
class FusedSphereFace2Head(SphereFace2Head):
    """:class:`SphereFace2Head` that always takes the fused, chunked loss and gradient pass.

    Takes the parameters of :class:`SphereFace2Head` but ``implementation``; ``chunk_size``
    is the number of classes scored at a time (None: derived from a memory budget, see
    :mod:`sphereface2.heads.memory_budget`). The forward pass precomputes the gradients,
    so run evaluation-only passes under ``torch.no_grad()``; double backward is not
    supported.
    """

    head_name = "sphereface2_fused"
    fixed_implementation = "fused"
    # What build_head, the registry's option check and the config checker list and accept.
    __signature__ = _without_implementation(inspect.signature(SphereFace2Head))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Bound against the signature below, so that ``implementation`` is refused as an
        # unknown keyword, as any other is.
        try:
            bound = self.__signature__.bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{type(self).__name__}() {err}") from None
        super().__init__(*bound.args, implementation=self.fixed_implementation, **bound.kwargs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, chunk_size={self.chunk_size}"
