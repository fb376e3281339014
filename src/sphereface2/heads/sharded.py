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

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sphereface2.distributed.collectives import (
    all_gather_rows,
    all_reduce_max,
    gather_and_replicate,
    gather_sizes,
    global_sum,
)
from sphereface2.distributed.process_group import rank as get_rank
from sphereface2.distributed.process_group import world_size as get_world_size
from sphereface2.distributed.sharding import class_shard, shard_sizes
from sphereface2.heads.base import NORM_EPS, cosines, renormalise_
from sphereface2.heads.margin_softmax import MarginSoftmaxHead, SoftmaxHead, margin_cross_entropy
from sphereface2.heads.registry import HEADS, build_head
from sphereface2.heads.sphereface2 import SphereFace2Head
from sphereface2.heads.sphereface2_math import bias_init, chunk_loss
from sphereface2.heads.validation import check_batch, check_choice

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

INIT_MODES = ("full", "shard")
SHARDABLE_TYPES = (SphereFace2Head, MarginSoftmaxHead, SoftmaxHead)


def _meta_template(name: str, num_classes: int, embedding_dim: int, params: dict) -> nn.Module:
    """The plain head built on the meta device: it checks the parameters and carries the
    hyper-parameters and margin functions without allocating a (K, d) matrix."""
    with torch.device("meta"):
        return build_head(name, num_classes, embedding_dim, **params)


def _shard_seed(seed: int, start: int) -> int:
    """A per-shard generator seed derived from the run's seed and the shard's first class."""
    return (seed * 0x9E3779B97F4A7C15 + start * 0xBF58476D1CE4E5B9 + 1) % (1 << 63)


def init_proxy_rows(
    num_classes: int,
    embedding_dim: int,
    start: int,
    end: int,
    *,
    mode: str = "full",
    seed: int = 0,
    renormalise: bool = True,
) -> Tensor:
    """Rows ``[start, end)`` of a Xavier-normal (num_classes, embedding_dim) proxy matrix.

    ``mode="full"`` draws the whole matrix from a CPU generator seeded with ``seed`` and
    keeps the slice: the rows are exactly those of a plain head built right after
    ``torch.manual_seed(seed)``, but every rank briefly holds K x d floats (2 GB for
    1M x 512 in float32). ``mode="shard"`` draws only the slice, from a generator seeded by
    ``(seed, start)``, with the standard deviation of the global (K, d) Xavier init: the
    same distribution and K_local x d memory, but not the plain head's values.
    ``renormalise`` scales every row to unit length (the normalised-proxy heads).
    """
    check_choice("init_proxy_rows", "mode", mode, INIT_MODES)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"init_proxy_rows: seed must be an int, got {seed!r}")
    if not 0 <= start <= end <= num_classes:
        raise ValueError(f"init_proxy_rows: need 0 <= start <= end <= {num_classes}")
    if mode == "full":
        full = torch.empty(num_classes, embedding_dim)
        nn.init.xavier_normal_(full, generator=torch.Generator().manual_seed(seed))
        if renormalise:
            renormalise_(full)  # on the full matrix, exactly as the plain head does
        return full[start:end].clone()
    std = math.sqrt(2.0 / (num_classes + embedding_dim))  # Xavier fans of the global matrix
    generator = torch.Generator().manual_seed(_shard_seed(seed, start))
    rows = torch.empty(end - start, embedding_dim).normal_(0.0, std, generator=generator)
    if renormalise:
        renormalise_(rows)
    return rows


class ShardedHead(nn.Module):
    """Shared plumbing: class range, batch gathering and checks, full-weight conversion.

    Parameters named in ``sharded_keys`` hold this rank's class rows along dim 0; every
    other parameter is replicated (identical on all ranks). Parameter names equal the plain
    head's, so :meth:`full_state_dict` loads into the plain head and
    :meth:`load_full_state_dict` takes a plain head's state dict.
    """

    sharded_keys: tuple[str, ...] = ("weight",)

    def __init__(
        self,
        template: nn.Module,
        group: ProcessGroup | None,
        *,
        init: str,
        seed: int,
        renormalise: bool,
    ) -> None:
        super().__init__()
        self.head_name = str(template.head_name)
        self.num_classes = int(template.num_classes)
        self.embedding_dim = int(template.embedding_dim)
        self.validate = bool(template.validate)
        self.init = check_choice(f"sharded {self.head_name}", "init", init, INIT_MODES)
        self.seed = seed
        self.group = group
        self.rank = get_rank(group)
        self.world_size = get_world_size(group)
        self.class_start, self.class_end = class_shard(self.num_classes, self.rank, self.world_size)
        self.weight = nn.Parameter(
            init_proxy_rows(
                self.num_classes,
                self.embedding_dim,
                self.class_start,
                self.class_end,
                mode=init,
                seed=seed,
                renormalise=renormalise,
            )
        )

    @property
    def num_local_classes(self) -> int:
        return self.class_end - self.class_start

    def sharded_parameters(self) -> list[nn.Parameter]:
        """Parameters holding this rank's class rows (different on every rank)."""
        return [p for key, p in self.named_parameters() if key in self.sharded_keys]

    def replicated_parameters(self) -> list[nn.Parameter]:
        """Parameters identical on every rank (their gradients are summed in the backward)."""
        return [p for key, p in self.named_parameters() if key not in self.sharded_keys]

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, "
            f"classes=[{self.class_start}, {self.class_end}), rank={self.rank}, "
            f"world_size={self.world_size}"
        )

    # -- the batch -------------------------------------------------------------------------

    def gather_batch(
        self, embeddings: Tensor, labels: Tensor, replicated: Sequence[Tensor] = ()
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Check the local batch, gather the global one and check its values.

        Values are checked after the gather so that every rank sees the same global batch
        and raises the same error (an error on one rank alone would leave the others
        waiting in a collective). Batch indices in that error count in the global batch.
        """
        name = f"sharded {self.head_name}"
        dims = {"num_classes": self.num_classes, "embedding_dim": self.embedding_dim}
        check_batch(name, embeddings, labels, check_values=False, **dims)
        if self.world_size == 1:
            x, y, reps = embeddings, labels, list(replicated)
        else:
            sizes = gather_sizes(embeddings.shape[0], self.group, embeddings.device)
            x, reps = gather_and_replicate(embeddings, replicated, self.group, sizes=sizes)
            y = all_gather_rows(labels.long(), self.group, sizes=sizes)
            name = f"{name} (global batch of {len(sizes)} ranks, sizes {sizes})"
        if self.validate:
            check_batch(name, x.detach(), y, check_values=True, **dims)
        return x, y, reps

    def positive_columns(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 1) column of each label within this shard (0 where it lies elsewhere) and the
        (B,) mask of labels this shard owns."""
        index = labels.long() - self.class_start
        owned = (index >= 0) & (index < self.num_local_classes)
        return torch.where(owned, index, 0).unsqueeze(1), owned

    # -- checkpoints -----------------------------------------------------------------------

    def gather_full(self, key: str = "weight", dst: int | None = 0) -> Tensor | None:
        """The full (num_classes, ...) tensor of sharded parameter ``key``, detached.

        ``dst`` is a rank of the head's group: only it gets the tensor (others get None);
        ``dst=None`` gives it to every rank. All ranks must call this.
        """
        if key not in self.sharded_keys:
            raise ValueError(f"{key!r} is not sharded; sharded keys: {self.sharded_keys}")
        local = getattr(self, key).detach()
        if self.world_size == 1:
            return local.clone()
        sizes = shard_sizes(self.num_classes, self.world_size)
        rows = max(sizes)
        padded = local.new_zeros((rows, *local.shape[1:]))
        padded[: local.shape[0]] = local
        if dst is None:
            parts: list[Tensor] | None = [torch.empty_like(padded) for _ in sizes]
            dist.all_gather(parts, padded, group=self.group)
        else:
            if not 0 <= dst < self.world_size:
                raise ValueError(f"dst must be in [0, {self.world_size}), got {dst}")
            mine = self.rank == dst
            parts = [torch.empty_like(padded) for _ in sizes] if mine else None
            global_dst = dst if self.group is None else dist.get_global_rank(self.group, dst)
            dist.gather(padded, parts, dst=global_dst, group=self.group)
        if parts is None:
            return None
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    def gather_full_weight(self, dst: int | None = 0) -> Tensor | None:
        """The full (num_classes, embedding_dim) proxy matrix on ``dst`` (None: every rank)."""
        return self.gather_full("weight", dst)

    @torch.no_grad()
    def load_full_weight(self, weight: Tensor) -> None:
        """Copy this rank's rows of a full (num_classes, embedding_dim) matrix into ``weight``."""
        self._load_rows("weight", weight)

    def full_state_dict(self, dst: int | None = 0) -> dict[str, Tensor] | None:
        """The plain head's state dict (full sharded tensors) on ``dst``; None elsewhere."""
        full: dict[str, Tensor] = {}
        for key, param in self.named_parameters():
            value = self.gather_full(key, dst) if key in self.sharded_keys else param.detach()
            if value is not None:
                full[key] = value.clone()
        return full if dst is None or self.rank == dst else None

    @torch.no_grad()
    def load_full_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load a plain head's state dict: this rank's rows of the sharded tensors, the
        replicated ones whole. Keys must match exactly."""
        expected = {key for key, _ in self.named_parameters()}
        if set(state) != expected:
            raise ValueError(
                f"sharded {self.head_name}: state dict has keys {sorted(state)}, "
                f"expected {sorted(expected)}"
            )
        for key, param in self.named_parameters():
            if key in self.sharded_keys:
                self._load_rows(key, state[key])
            else:
                if tuple(state[key].shape) != tuple(param.shape):
                    raise ValueError(
                        f"sharded {self.head_name}: {key} has shape {tuple(state[key].shape)}, "
                        f"expected {tuple(param.shape)}"
                    )
                param.copy_(state[key])

    def _load_rows(self, key: str, full: Tensor) -> None:
        param = getattr(self, key)
        expected = (self.num_classes, *param.shape[1:])
        if tuple(full.shape) != expected:
            raise ValueError(
                f"sharded {self.head_name}: full {key} has shape {tuple(full.shape)}, "
                f"expected {expected}"
            )
        param.data.copy_(full[self.class_start : self.class_end])


def split_state_dict(
    full: Mapping[str, Tensor],
    sharded_keys: Sequence[str],
    num_classes: int,
    rank: int,
    world_size: int,
) -> dict[str, Tensor]:
    """One rank's shard of a plain head's state dict (no process group needed)."""
    start, end = class_shard(num_classes, rank, world_size)
    out = {}
    for key, value in full.items():
        if key in sharded_keys:
            if value.shape[0] != num_classes:
                raise ValueError(f"{key} has {value.shape[0]} rows, expected {num_classes}")
            out[key] = value[start:end].clone()
        else:
            out[key] = value.clone()
    return out


def merge_state_dicts(
    shards: Sequence[Mapping[str, Tensor]], sharded_keys: Sequence[str]
) -> dict[str, Tensor]:
    """A plain head's state dict from the per-rank state dicts of a sharded head, in rank
    order (e.g. shard files saved by each rank). Replicated tensors must agree."""
    if not shards:
        raise ValueError("merge_state_dicts: no shards")
    keys = set(shards[0])
    for index, shard in enumerate(shards):
        if set(shard) != keys:
            raise ValueError(f"shard {index} has keys {sorted(shard)}, shard 0 has {sorted(keys)}")
    merged = {}
    for key in shards[0]:
        if key in sharded_keys:
            merged[key] = torch.cat([shard[key] for shard in shards])
            continue
        for index, shard in enumerate(shards[1:], start=1):
            if not torch.equal(shard[key], shards[0][key]):
                raise ValueError(f"replicated {key!r} differs between shard 0 and shard {index}")
        merged[key] = shards[0][key].clone()
    return merged


class ShardedSphereFace2Head(ShardedHead):
    """SphereFace2 with the proxies split by class range; same loss and gradients.

    Parameters: ``weight`` (this rank's K_local x d unit proxies) and ``bias`` (the shared
    scalar, replicated: same closed-form init from the GLOBAL class count on every rank;
    its gradient is summed over ranks inside the backward, so it stays identical).

    Each rank scores the whole gathered batch against its own classes (positive terms only
    for labels in its range, negative terms for every other sample) and scales the sum by
    lw / global batch; the sum of these partial losses over ranks is the plain head's loss.
    The per-class terms come from the plain head's maths:
    :func:`~sphereface2.heads.sphereface2_math.chunk_loss` for ``name="sphereface2"``, or
    the chunked pass of the fused head for ``name="sphereface2_fused"`` (which never holds
    the (B, K_local) cosines; its ``chunk_size`` parameter is accepted too).

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
        template = _meta_template(name, num_classes, embedding_dim, params)
        if not isinstance(template, SphereFace2Head):
            raise ValueError(f"head {name!r} is not a SphereFace2 head")
        super().__init__(template, group, init=init, seed=seed, renormalise=True)
        self.margin_type, self.gradient = template.margin_type, template.gradient
        self.lam, self.r, self.m, self.t, self.lw = (
            template.lam,
            template.r,
            template.m,
            template.t,
            template.lw,
        )
        self.fused = _is_fused_sphereface2(template)
        self.chunk_size = getattr(template, "chunk_size", None)
        b0 = bias_init(self.num_classes, self.margin_type, self.lam, self.r, self.m, self.t)
        self.bias = nn.Parameter(torch.tensor(b0, dtype=self.weight.dtype))

    def _maths(self) -> dict[str, Any]:
        return {
            "margin_type": self.margin_type,
            "lam": self.lam,
            "r": self.r,
            "m": self.m,
            "t": self.t,
            "gradient": self.gradient,
        }

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
            positive, total = _cosine_sums(cos.detach(), *self.positive_columns(y))
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
            **self._maths(),
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
        compute = self._fused_partial if self.fused else self._plain_partial
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


def _is_fused_sphereface2(template: nn.Module) -> bool:
    """Whether ``template`` is the fused SphereFace2 head (imported only if it exists)."""
    try:
        from sphereface2.heads.fused_sphereface2 import FusedSphereFace2Head
    except ImportError:
        return False
    return isinstance(template, FusedSphereFace2Head)


def _cosine_sums(cos: Tensor, column: Tensor, owned: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of the cosines to owned labels' proxies and sum of all cosines (this shard)."""
    total = cos.sum()
    if cos.shape[1] == 0:
        return total.new_zeros(()), total
    cos_y = cos.gather(1, column).squeeze(1)
    return torch.where(owned, cos_y, 0.0).sum(), total


def sharded_cross_entropy(
    logits: Tensor, column: Tensor, owned: Tensor, group: ProcessGroup | None
) -> Tensor:
    """Mean cross-entropy over classes split across ranks.

    ``logits`` (B, C_local) are this rank's columns for the whole global batch (target
    margins already applied), ``column``/``owned`` locate the label columns this rank owns.
    The shift (global row max) is all-reduced by MAX without gradient; the sums of
    exponentials and the target logits are summed over ranks with :func:`global_sum`.
    """
    batch = logits.shape[0]
    if logits.shape[1] == 0:
        local_max = logits.new_full((batch,), -math.inf).detach()
        target = logits.new_zeros((batch,))
    else:
        local_max = logits.detach().max(dim=1).values
        target = torch.where(owned, logits.gather(1, column).squeeze(1), 0.0)
    shift = all_reduce_max(local_max, group)
    sum_exp = torch.exp(logits - shift.unsqueeze(1)).sum(dim=1)  # stays in the graph if empty
    summed = global_sum(torch.stack([sum_exp, target]), group)
    return (torch.log(summed[0]) + shift - summed[1]).mean()


def _softmax_stats(
    cos: Tensor,
    scores: Tensor,
    column: Tensor,
    owned: Tensor,
    num_classes: int,
    group: ProcessGroup | None,
) -> dict[str, Tensor]:
    """pos_cos, neg_cos and accuracy (the label's score is the global row maximum; an
    exact tie counts as correct, where the plain head's argmax takes the first index)."""
    batch = cos.shape[0]
    positive, total = _cosine_sums(cos, column, owned)
    if scores.shape[1] == 0:
        score_y = scores.new_zeros((batch,))
        score_max = scores.new_full((batch,), -math.inf)
    else:
        score_y = torch.where(owned, scores.gather(1, column).squeeze(1), 0.0)
        score_max = scores.max(dim=1).values
    summed = global_sum(torch.cat([score_y, positive.view(1), total.view(1)]), group)
    score_max = all_reduce_max(score_max, group)
    return {
        "pos_cos": summed[batch] / batch,
        "neg_cos": (summed[batch + 1] - summed[batch]) / (batch * (num_classes - 1)),
        "accuracy": (summed[:batch] >= score_max).float().mean(),
    }


class ShardedMarginSoftmaxHead(ShardedHead):
    """A normalised-proxy softmax head (normface, cosface, arcface, sphereface, ...) sharded
    by class range, computing the plain head's cross-entropy on the global batch.

    ``name`` is the plain head's registry name; the target-logit margin is the plain head's
    own ``target_logit`` (taken from a parameter-free template on the meta device), applied
    on the rank that owns each label.
    """

    def __init__(
        self,
        name: str,
        num_classes: int,
        embedding_dim: int,
        group: ProcessGroup | None = None,
        *,
        init: str = "full",
        seed: int = 0,
        **params: Any,
    ) -> None:
        template = _meta_template(name, num_classes, embedding_dim, params)
        if not isinstance(template, MarginSoftmaxHead):
            raise ValueError(f"head {name!r} is not a margin-softmax head")
        super().__init__(template, group, init=init, seed=seed, renormalise=True)
        self.s = template.s
        self._target_logit = template.target_logit  # a bound method; uses no tensors
        self._margin_repr = template.extra_repr().split(", ", 2)[2]

    def forward(
        self, embeddings: Tensor, labels: Tensor, *, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The plain head's mean cross-entropy; stats "pos_cos", "neg_cos", "accuracy"."""
        x, y, _ = self.gather_batch(embeddings, labels)
        renormalise_(self.weight)
        cos = cosines(x, self.weight)
        column, owned = self.positive_columns(y)
        if self.world_size == 1:
            loss = margin_cross_entropy(cos, y, self.s, self._target_logit)
        else:
            logits = self.s * cos
            if self.num_local_classes > 0:
                own = logits.gather(1, column).squeeze(1)
                margin = self._target_logit(cos.gather(1, column).squeeze(1))
                target = torch.where(owned, margin, own)
                logits = logits.scatter(1, column, target.unsqueeze(1))
            loss = sharded_cross_entropy(logits, column, owned, self.group)
        if not return_stats:
            return loss
        with torch.no_grad():
            cos = cos.detach()
            stats = _softmax_stats(cos, cos, column, owned, self.num_classes, self.group)
        return loss, stats

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._margin_repr}, init={self.init!r}"


class ShardedSoftmaxHead(ShardedHead):
    """The plain softmax head (linear layer with a bias per class) sharded by class range:
    ``weight`` (K_local, d) and ``bias`` (K_local,) both hold this rank's classes."""

    sharded_keys = ("weight", "bias")

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        group: ProcessGroup | None = None,
        *,
        init: str = "full",
        seed: int = 0,
        **params: Any,
    ) -> None:
        template = _meta_template("softmax", num_classes, embedding_dim, params)
        super().__init__(template, group, init=init, seed=seed, renormalise=False)
        self.bias = nn.Parameter(torch.zeros(self.num_local_classes))

    def forward(
        self, embeddings: Tensor, labels: Tensor, *, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The plain head's mean cross-entropy; stats "pos_cos", "neg_cos", "accuracy"."""
        x, y, _ = self.gather_batch(embeddings, labels)
        logits = F.linear(x.to(self.weight.dtype), self.weight, self.bias)
        column, owned = self.positive_columns(y)
        if self.world_size == 1:
            loss = F.cross_entropy(logits, y.long())
        else:
            loss = sharded_cross_entropy(logits, column, owned, self.group)
        if not return_stats:
            return loss
        with torch.no_grad():
            unit = F.normalize(self.weight.detach(), dim=1)
            cos = cosines(x.detach(), unit)
            stats = _softmax_stats(
                cos, logits.detach(), column, owned, self.num_classes, self.group
            )
        return loss, stats


def sharded_head_names() -> list[str]:
    """Registered head names that have a sharded version."""
    names = []
    for name in HEADS.names():
        builder = HEADS.get(name)
        if isinstance(builder, type) and issubclass(builder, SHARDABLE_TYPES):
            names.append(name)
    return names


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
    template = _meta_template(name, num_classes, embedding_dim, params)
    common = {"init": init, "seed": seed, **params}
    if isinstance(template, SphereFace2Head):
        return ShardedSphereFace2Head(num_classes, embedding_dim, group, name=name, **common)
    if isinstance(template, MarginSoftmaxHead):
        return ShardedMarginSoftmaxHead(name, num_classes, embedding_dim, group, **common)
    if isinstance(template, SoftmaxHead):
        return ShardedSoftmaxHead(num_classes, embedding_dim, group, **common)
    raise ValueError(
        f"head {name!r} has no sharded version; sharded heads: {', '.join(sharded_head_names())}"
    )
