"""Partial FC for the softmax-family heads: the cross-entropy over a sample of the classes.

As in arcface_torch's PartialFC, each training forward keeps every class that is a label
in the batch (the positives) and adds negatives drawn uniformly without replacement, so
that ``max(num_positive, ceil(sample_rate * K))`` classes take part; the cross-entropy is
taken over those classes only, with the labels remapped to their columns. Only the
sampled proxies get a gradient (the other rows' gradient is exactly zero), and the
(B, K) logits shrink to (B, sample_rate * K). A class-sharded head samples each shard on
its own: ``ceil(sample_rate * K_local)`` classes per shard, its own positives kept.

Reproducibility: the sample of a forward is a function of ``(sample_seed, first class of
the shard, draw)``, where ``draw`` counts the sampled forwards in the integer buffer
``sample_draws``. The buffer is part of the head's state dict, so a checkpoint carries it
and a resumed run draws the same classes as an uninterrupted one; no global generator is
touched. In eval mode the head computes the exact loss over all classes and draws nothing.

SphereFace2 has no sampling: it needs no softmax normaliser, so its fused head is exact
over all K classes without ever holding the (B, K) logits.
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import torch
from torch import Tensor

from sphereface2.heads.arg_checks import check_number


def check_sample_rate(head: str, value: object) -> float:
    """``value`` as a float in (0, 1]; the error names ``sample_rate`` and the head."""
    return check_number(head, "sample_rate", value, low=0.0, high=1.0, high_inclusive=True)


def check_sample_seed(head: str, value: object) -> int:
    """An int seed for the class sampler."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{head}: sample_seed must be an int, got {value!r}")
    return int(value)


def sample_size(num_classes: int, num_positive: int, sample_rate: float) -> int:
    """``max(num_positive, ceil(sample_rate * num_classes))``.

    The rate is read as written (``str(0.7)`` is 7/10): 0.7 of 10 classes is 7, where the
    float product 0.7 * 10 = 7.000000000000001 would round up to 8.
    """
    wanted = math.ceil(Fraction(str(sample_rate)) * num_classes)
    return max(num_positive, min(wanted, num_classes))


def draw_seed(sample_seed: int, class_start: int, draw: int) -> int:
    """A 63-bit generator seed for one draw of one shard; stable across Python versions."""
    key = f"partial-fc:{sample_seed}:{class_start}:{draw}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def sample_classes(
    positives: Tensor, num_classes: int, sample_rate: float, generator: torch.Generator
) -> Tensor:
    """Sorted class indices in [0, num_classes): all of ``positives`` (sorted, unique) and
    uniformly drawn other classes, :func:`sample_size` in all."""
    count = sample_size(num_classes, positives.numel(), sample_rate)
    if count == positives.numel():
        return positives
    is_positive = torch.zeros(num_classes, dtype=torch.bool, device=positives.device)
    is_positive[positives] = True
    # the first negatives of a uniform permutation: a uniform subset without replacement
    order = torch.randperm(num_classes, generator=generator, device=positives.device)
    negatives = order[~is_positive[order]][: count - positives.numel()]
    return torch.cat([positives, negatives]).sort().values


class ClassSampling:
    """Mixin for an ``nn.Module`` head: the sampler's options, draw counter and last sample.

    Call :meth:`setup_class_sampling` after ``nn.Module.__init__`` with values checked by
    :func:`check_sample_rate` / :func:`check_sample_seed`. With ``sample_rate == 1`` no
    buffer is registered, so the state dict is the exact head's.
    """

    sample_rate: float
    sample_seed: int
    training: bool

    def setup_class_sampling(self, sample_rate: float, sample_seed: int) -> None:
        self.sample_rate = sample_rate
        self.sample_seed = sample_seed
        #: the global class indices (sorted) used by the last sampled forward; for testing
        self.last_sampled_classes: Tensor | None = None
        if sample_rate < 1:
            self.register_buffer("sample_draws", torch.zeros((), dtype=torch.int64))  # type: ignore[attr-defined]

    @property
    def samples_classes(self) -> bool:
        """Whether this forward uses a sample of the classes (training mode, rate < 1)."""
        return self.sample_rate < 1 and self.training

    @torch.no_grad()
    def draw_classes(self, labels: Tensor, num_classes: int, class_start: int = 0) -> Tensor:
        """This forward's classes among ``[class_start, class_start + num_classes)``, as
        sorted indices from 0: the labels in that range and sampled negatives. Advances the
        draw counter."""
        counter: Tensor = self.sample_draws  # type: ignore[attr-defined]
        draw = int(counter.item())
        counter.add_(1)
        owned = labels[(labels >= class_start) & (labels < class_start + num_classes)]
        positives = torch.unique(owned.long() - class_start, sorted=True)
        seed = draw_seed(self.sample_seed, class_start, draw)
        generator = torch.Generator(device=labels.device).manual_seed(seed)
        classes = sample_classes(positives, num_classes, self.sample_rate, generator)
        self.last_sampled_classes = classes + class_start
        return classes

    def sampling_repr(self) -> str:
        """``, sample_rate=R, sample_seed=S`` when sampling, else nothing."""
        if self.sample_rate == 1:
            return ""
        return f", sample_rate={self.sample_rate:g}, sample_seed={self.sample_seed}"
