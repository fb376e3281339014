"""Class-sharded heads: each rank owns the proxies of one contiguous class range.

Built with :func:`build_sharded_head` (same names and parameters as :func:`build_head`, plus
a process group). Every rank gets the same scalar loss, equal to the plain head's loss on
the global batch (the concatenation of the ranks' batches in rank order), and exact
gradients for its own proxy rows, the replicated parameters and its own embeddings. With a
world of one (no process group) a sharded head computes exactly what the plain head does.

What crosses ranks per training step:

* forward: the local batch sizes (one int each), an all-gather of the B x d embeddings and
  the B labels, and a few scalars (the partial loss sums; the statistics when asked).
  SphereFace2 needs nothing else: its K binary classifiers are independent, so there is no
  softmax normaliser to share. The softmax-family heads additionally all-reduce two or
  three length-B vectors (the log-sum-exp shift by MAX, then the sum of exponentials and
  the target logit by SUM).
* backward: the embedding gradients, reduced so each rank gets its own B_local x d rows,
  and the gradient of each replicated parameter (the SphereFace2 bias), one scalar.
  No B x K matrix and no proxy ever leaves its rank.

Rules for callers: every rank must call the head with the same ``return_stats`` and
back-propagate the returned loss (the backward contains collectives); the head's
parameters must not be wrapped in DistributedDataParallel (each rank owns different rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sphereface2.heads.margin_softmax import MarginSoftmaxHead, SoftmaxHead
from sphereface2.heads.registry import HEADS, check_head_options
from sphereface2.heads.sharded_base import (
    INIT_MODES,
    ShardedHead,
    init_proxy_rows,
    merge_state_dicts,
    split_state_dict,
)
from sphereface2.heads.sharded_softmax import (
    ShardedMarginSoftmaxHead,
    ShardedSoftmaxHead,
    sharded_cross_entropy,
)
from sphereface2.heads.sharded_sphereface2 import ShardedSphereFace2Head
from sphereface2.heads.sphereface2 import SphereFace2Head

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

__all__ = [
    "INIT_MODES",
    "ShardedHead",
    "ShardedMarginSoftmaxHead",
    "ShardedSoftmaxHead",
    "ShardedSphereFace2Head",
    "build_sharded_head",
    "init_proxy_rows",
    "merge_state_dicts",
    "sharded_cross_entropy",
    "sharded_head_names",
    "split_state_dict",
]

SHARDABLE_TYPES = (SphereFace2Head, MarginSoftmaxHead, SoftmaxHead)


def _builds(builder: object, kind: type | tuple[type, ...]) -> bool:
    """Whether a registered builder is a head class of ``kind``."""
    return isinstance(builder, type) and issubclass(builder, kind)


def sharded_head_names() -> list[str]:
    """Registered head names that have a sharded version."""
    return [name for name in HEADS.names() if _builds(HEADS.get(name), SHARDABLE_TYPES)]


def build_sharded_head(
    name: str,
    num_classes: int,
    embedding_dim: int,
    group: ProcessGroup | None = None,
    *,
    init: str = "full",
    seed: int = 0,
    **params: Any,
) -> ShardedHead:
    """The class-sharded version of ``build_head(name, num_classes, embedding_dim, **params)``.

    ``group``: the process group to shard over (None: the default group; without one, a
    world of one that equals the plain head). ``init``/``seed``: see :func:`init_proxy_rows`;
    with ``init="full"`` the proxies equal those of a plain head built after
    ``torch.manual_seed(seed)``. Unknown names and parameters raise the plain registry's
    errors; registered heads without a sharded version raise ValueError naming those with.
    """
    builder = HEADS.get(name)
    common = {"init": init, "seed": seed, **params}
    if _builds(builder, SphereFace2Head):
        return ShardedSphereFace2Head(num_classes, embedding_dim, group, name=name, **common)
    if _builds(builder, MarginSoftmaxHead):
        return ShardedMarginSoftmaxHead(name, num_classes, embedding_dim, group, **common)
    if _builds(builder, SoftmaxHead):
        return ShardedSoftmaxHead(num_classes, embedding_dim, group, **common)
    check_head_options(name, params)  # a bad keyword first, as build_head would name it
    raise ValueError(
        f"head {name!r} has no sharded version; sharded heads: {', '.join(sharded_head_names())}"
    )
