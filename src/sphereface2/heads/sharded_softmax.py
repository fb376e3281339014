"""Softmax-family heads sharded by class range: a distributed log-sum-exp over the ranks."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sphereface2.distributed.collectives import all_reduce_max, global_sum
from sphereface2.heads.base import cosines, renormalise_
from sphereface2.heads.class_sampling import ClassSampling
from sphereface2.heads.margin_softmax import MarginSoftmaxHead, margin_cross_entropy
from sphereface2.heads.sharded_base import ShardedHead, cosine_sums, meta_template

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup


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
    num_classes: int | None,
    group: ProcessGroup | None,
) -> dict[str, Tensor]:
    """pos_cos, neg_cos and accuracy (the label's score is the global row maximum; an
    exact tie counts as correct, where the plain head's argmax takes the first index).
    ``num_classes=None``: the classes are the columns of ``cos``, summed over ranks (a
    sampled head's)."""
    batch = cos.shape[0]
    positive, total = cosine_sums(cos, column, owned)
    if scores.shape[1] == 0:
        score_y = scores.new_zeros((batch,))
        score_max = scores.new_full((batch,), -math.inf)
    else:
        score_y = torch.where(owned, scores.gather(1, column).squeeze(1), 0.0)
        score_max = scores.max(dim=1).values
    columns = [] if num_classes is not None else [total.new_tensor([float(cos.shape[1])])]
    summed = global_sum(torch.cat([score_y, positive.view(1), total.view(1), *columns]), group)
    score_max = all_reduce_max(score_max, group)
    classes = num_classes if num_classes is not None else summed[batch + 2]
    return {
        "pos_cos": summed[batch] / batch,
        "neg_cos": (summed[batch + 1] - summed[batch]) / (batch * (classes - 1)),
        "accuracy": (summed[:batch] >= score_max).float().mean(),
    }


class ShardedMarginSoftmaxHead(ShardedHead, ClassSampling):
    """A normalised-proxy softmax head (normface, cosface, arcface, sphereface, ...) sharded
    by class range, computing the plain head's cross-entropy on the global batch.

    ``name`` is the plain head's registry name; the target-logit margin is the plain head's
    own ``target_logit`` (taken from a parameter-free template on the meta device), applied
    on the rank that owns each label. With ``sample_rate`` < 1 every shard samples its own
    classes (:mod:`sphereface2.heads.class_sampling`); ``sample_seed`` defaults to ``seed``.
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
        template = meta_template(name, num_classes, embedding_dim, params)
        if not isinstance(template, MarginSoftmaxHead):
            raise ValueError(f"head {name!r} is not a margin-softmax head")
        super().__init__(
            **_plain_head_values(template), group=group, init=init, seed=seed, renormalise=True
        )
        self.setup_class_sampling(template.sample_rate, _sample_seed(template, params, seed))
        self.s = template.s
        self._target_logit = template.target_logit  # a bound method; uses no tensors
        self._margin_repr = template._margin_repr()

    def forward(
        self, embeddings: Tensor, labels: Tensor, *, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The plain head's mean cross-entropy; stats "pos_cos", "neg_cos", "accuracy"."""
        x, y, _ = self.gather_batch(embeddings, labels)
        renormalise_(self.weight)
        column, owned = self.positive_columns(y)
        if self.samples_classes:
            classes = self.draw_classes(y, self.num_local_classes, self.class_start)
            cos = cosines(x, self.weight[classes])
            column = _sampled_columns(classes, column, owned)
            y = column.squeeze(1)  # a world of one owns every label
        else:
            cos = cosines(x, self.weight)
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
            classes_for_stats = None if self.samples_classes else self.num_classes
            stats = _softmax_stats(cos, cos, column, owned, classes_for_stats, self.group)
        return loss, stats

    def extra_repr(self) -> str:
        margin = f"{self._margin_repr}{self.sampling_repr()}"
        return f"{super().extra_repr()}, {margin}, init={self.init!r}"


class ShardedSoftmaxHead(ShardedHead, ClassSampling):
    """The plain softmax head (linear layer with a bias per class) sharded by class range:
    ``weight`` (K_local, d) and ``bias`` (K_local,) both hold this rank's classes. Class
    sampling as in :class:`ShardedMarginSoftmaxHead`."""

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
        template = meta_template("softmax", num_classes, embedding_dim, params)
        super().__init__(
            **_plain_head_values(template), group=group, init=init, seed=seed, renormalise=False
        )
        self.bias = nn.Parameter(torch.zeros(self.num_local_classes))
        self.setup_class_sampling(template.sample_rate, _sample_seed(template, params, seed))

    def forward(
        self, embeddings: Tensor, labels: Tensor, *, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The plain head's mean cross-entropy; stats "pos_cos", "neg_cos", "accuracy"."""
        x, y, _ = self.gather_batch(embeddings, labels)
        weight, bias = self.weight, self.bias
        column, owned = self.positive_columns(y)
        if self.samples_classes:
            classes = self.draw_classes(y, self.num_local_classes, self.class_start)
            weight, bias = weight[classes], bias[classes]
            column = _sampled_columns(classes, column, owned)
            y = column.squeeze(1)  # a world of one owns every label
        logits = F.linear(x.to(weight.dtype), weight, bias)
        if self.world_size == 1:
            loss = F.cross_entropy(logits, y.long())
        else:
            loss = sharded_cross_entropy(logits, column, owned, self.group)
        if not return_stats:
            return loss
        with torch.no_grad():
            unit = F.normalize(weight.detach(), dim=1)
            cos = cosines(x.detach(), unit)
            classes_for_stats = None if self.samples_classes else self.num_classes
            stats = _softmax_stats(
                cos, logits.detach(), column, owned, classes_for_stats, self.group
            )
        return loss, stats

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}{self.sampling_repr()}"


def _plain_head_values(template: nn.Module) -> dict[str, Any]:
    """What a sharded head takes from its plain template: name, sizes and ``validate``."""
    return {
        "head_name": template.head_name,
        "num_classes": template.num_classes,
        "embedding_dim": template.embedding_dim,
        "validate": template.validate,
    }


def _sample_seed(template: ClassSampling, params: dict[str, Any], seed: int) -> int:
    """The class sampler's seed: ``sample_seed`` if given (checked by the template), else
    the run's ``seed``."""
    return template.sample_seed if "sample_seed" in params else seed


def _sampled_columns(classes: Tensor, column: Tensor, owned: Tensor) -> Tensor:
    """(B, 1) column of each owned label among this shard's sampled ``classes`` (0 for
    labels owned elsewhere, as :meth:`ShardedHead.positive_columns` gives)."""
    if classes.numel() == 0:
        return column
    return torch.where(owned.unsqueeze(1), torch.searchsorted(classes, column), 0)
