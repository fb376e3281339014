"""Run a model over datasets: embeddings of images, and verification results of pair sets.

This is the thin layer between models and metrics: the metrics
(:mod:`sphereface2.metrics.verification`) take arrays, never models.

Flip test (the InsightFace protocol; :mod:`sphereface2.models.embed`): each image and its
horizontal mirror are embedded and the two *raw* embeddings are SUMMED. The sum is returned
unnormalised; the metrics L2-normalise it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sphereface2.evaluate.verification_sets import PAPER_SETS, PairSet
from sphereface2.metrics.verification import (
    INSIGHTFACE_THRESHOLDS,
    OPENSPHERE_FPRS,
    VerificationResult,
    cosine_scores,
    evaluate_pairs,
)
from sphereface2.models.embed import Progress, ProgressPrinter, embed_dataset  # noqa: F401
from sphereface2.models.loading import EmbeddingModel

COMBINED_NAME = "Combined"


@dataclass(frozen=True)
class SetEvaluation:
    """Both verification protocols on one pair set (or on several pooled).

    Attributes:
        name: the set's table name (``Combined`` for the pooled sets).
        result: the InsightFace 10-fold and OpenSphere best-threshold results.
        scores: (P,) cosine score of each pair (for ROC plots).
        issame: (P,) genuine flags.
        members: the sets pooled into this one (just ``(name,)`` for a single set).
        source: the file(s) the pairs came from.
        num_images: distinct images embedded for it.
    """

    name: str
    result: VerificationResult
    scores: np.ndarray
    issame: np.ndarray
    members: tuple[str, ...]
    source: str
    num_images: int

    @property
    def num_pairs(self) -> int:
        return int(self.issame.shape[0])


@dataclass(frozen=True)
class VerificationRun:
    """What :func:`evaluate_verification_sets` measured, with the settings that matter."""

    sets: tuple[SetEvaluation, ...]
    combined: SetEvaluation | None
    flip: bool
    batch_size: int
    folds: int
    fprs: tuple[float, ...]
    embed_seconds: float
    metric_seconds: float
    embeddings: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def num_images(self) -> int:
        return sum(s.num_images for s in self.sets)

    def all_sets(self) -> tuple[SetEvaluation, ...]:
        """The sets, then the combined set if there is one."""
        return self.sets + ((self.combined,) if self.combined is not None else ())


def resolve_combined(names: Sequence[str], combine: Sequence[str] | None) -> tuple[str, ...]:
    """Which sets to pool into the combined set.

    ``combine=None`` (auto): the paper's four (LFW, AgeDB-30, CALFW, CPLFW) when all are
    present, else every set when there are at least two, else none. An explicit list must
    name given sets; an empty list means no combined set.
    """
    if combine is None:
        if all(n in names for n in PAPER_SETS):
            return PAPER_SETS
        return tuple(names) if len(names) >= 2 else ()
    unknown = [n for n in combine if n not in names]
    if unknown:
        raise ValueError(
            f"cannot combine unknown set(s) {', '.join(unknown)}; the sets are {', '.join(names)}"
        )
    if len(set(combine)) != len(combine):
        raise ValueError(f"sets to combine are repeated: {list(combine)}")
    return tuple(n for n in names if n in combine)  # keep the sets' order


def evaluate_verification_sets(
    model: EmbeddingModel,
    sets: Sequence[PairSet],
    batch_size: int = 64,
    flip: bool = True,
    num_workers: int = 0,
    progress: Callable[[str], Progress | None] | None = None,
    combine: Sequence[str] | None = None,
    folds: int = 10,
    fprs: Sequence[float] = OPENSPHERE_FPRS,
) -> VerificationRun:
    """Embed each set's distinct images once and run both protocols per set and pooled.

    Args:
        model: the model.
        sets: the pair sets (distinct names; see :mod:`.verification_sets`).
        batch_size, flip, num_workers: as in :func:`embed_dataset`.
        progress: ``progress(set_name)`` returns the per-batch callback for that set.
        combine: sets pooled into the combined set (see :func:`resolve_combined`).
        folds: folds of the InsightFace protocol.
        fprs: FPR targets of the OpenSphere TPR@FPR read-outs.

    Returns:
        A :class:`VerificationRun`; ``embeddings`` holds each set's (N, d) raw embeddings.
    """
    if not sets:
        raise ValueError("no verification sets given")
    names = [s.name for s in sets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"verification set names must be distinct, {', '.join(repeated)} is repeated; "
            "name them (--name)"
        )
    pooled = resolve_combined(names, combine)
    embed_seconds = metric_seconds = 0.0
    evaluated: list[SetEvaluation] = []
    pairs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    embeddings: dict[str, np.ndarray] = {}
    for pair_set in sets:
        start = time.perf_counter()
        callback = progress(pair_set.name) if progress is not None else None
        emb = embed_dataset(model, pair_set.dataset, batch_size, flip, num_workers, callback)
        embed_seconds += time.perf_counter() - start
        start = time.perf_counter()
        e0, e1 = emb[pair_set.idx0], emb[pair_set.idx1]
        result = evaluate_pairs(
            e0, e1, pair_set.issame, pair_set.name, folds, INSIGHTFACE_THRESHOLDS, fprs
        )
        evaluated.append(
            SetEvaluation(
                name=pair_set.name,
                result=result,
                scores=cosine_scores(e0, e1),
                issame=pair_set.issame.copy(),
                members=(pair_set.name,),
                source=pair_set.source,
                num_images=pair_set.num_images,
            )
        )
        metric_seconds += time.perf_counter() - start
        pairs[pair_set.name] = (e0, e1, pair_set.issame)
        embeddings[pair_set.name] = emb
    combined = None
    if pooled:
        start = time.perf_counter()
        e0 = np.concatenate([pairs[n][0] for n in pooled])
        e1 = np.concatenate([pairs[n][1] for n in pooled])
        same = np.concatenate([pairs[n][2] for n in pooled])
        result = evaluate_pairs(e0, e1, same, COMBINED_NAME, folds, INSIGHTFACE_THRESHOLDS, fprs)
        by_name = {s.name: s for s in evaluated}
        combined = SetEvaluation(
            name=COMBINED_NAME,
            result=result,
            scores=cosine_scores(e0, e1),
            issame=same,
            members=pooled,
            source=" + ".join(by_name[n].source for n in pooled),
            num_images=sum(by_name[n].num_images for n in pooled),
        )
        metric_seconds += time.perf_counter() - start
    return VerificationRun(
        sets=tuple(evaluated),
        combined=combined,
        flip=flip,
        batch_size=batch_size,
        folds=folds,
        fprs=tuple(float(f) for f in fprs),
        embed_seconds=embed_seconds,
        metric_seconds=metric_seconds,
        embeddings=embeddings,
    )
