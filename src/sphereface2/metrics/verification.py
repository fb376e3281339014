"""Pair verification (LFW, AgeDB-30, CALFW, CPLFW, CFP-FP): the InsightFace 10-fold protocol,
the OpenSphere best-threshold protocol, and their combination over several sets.

Inputs are embeddings of the two images of each pair, in file order, plus the genuine
(``issame``) flags. Embeddings are usually :func:`fuse_flip` outputs (image + flipped image).

- InsightFace 10-fold (``verification.py``, ``calculate_roc``): squared Euclidean distance
  between L2-normalised embeddings (in [0, 4]); a pair is called genuine when
  ``distance < threshold``; thresholds ``0, 0.01, ..., 3.99``; ten contiguous folds in file
  order (sklearn ``KFold`` without shuffling: when the count is not divisible, the first
  ``n % folds`` folds hold one pair more); per fold the FIRST threshold with the best accuracy
  on the other folds is applied to the held-out fold; mean and population std of the fold
  accuracies. Also InsightFace's VAL@FAR=1e-3 (``calculate_val``).
- OpenSphere best threshold (``get_results``): cosine scores of all pairs; the accuracy at the
  single best global threshold (exact over every distinct score, a pair is genuine when
  ``score >= threshold``), with EER, AUC and TPR@FPR from :mod:`sphereface2.metrics.roc`.
- Combined (the paper's "more reliable" metric): the union of several sets' pairs scored with
  one threshold (both protocols on the pooled pairs), plus each set on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sphereface2.metrics.roc import (
    READ_METHODS,
    ReadMethod,
    RocCurve,
    TprAtFpr,
    equal_error_rate,
    roc_auc,
    threshold_counts,
    tpr_at_fpr,
    validate_scores_labels,
)

INSIGHTFACE_THRESHOLDS = np.arange(0, 4, 0.01)
"""The squared-distance thresholds of InsightFace's 10-fold accuracy."""
INSIGHTFACE_VAL_THRESHOLDS = np.arange(0, 4, 0.001)
"""The finer thresholds InsightFace uses to find the VAL@FAR threshold."""
OPENSPHERE_FPRS = (1e-4, 1e-3, 1e-2)

KFOLD_PROTOCOL = "InsightFace 10-fold (squared L2 distance, per-fold best threshold)"
BEST_THRESHOLD_PROTOCOL = "OpenSphere best threshold (cosine, one global threshold)"


def l2_normalize(x: object, what: str = "embeddings", row_offset: int = 0) -> np.ndarray:
    """Divide each row by its Euclidean norm.

    Args:
        x: (N, d) real array; float32 stays float32, anything else becomes float64.
        what: name used in error messages.
        row_offset: added to row numbers in error messages (for callers working in chunks).

    Raises:
        ValueError: if ``x`` is not 2-D, or a row is not finite or has zero norm (naming it).
    """
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (N, d) array, got shape {a.shape}")
    if a.dtype != np.float32:
        a = a.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", a, a))
    bad = ~np.isfinite(norms) | (norms == 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        kind = "a zero vector" if norms[row] == 0 else "not finite"
        raise ValueError(
            f"{what}: row {row + row_offset} is {kind}; cannot L2-normalise "
            f"({int(bad.sum())} such row(s))"
        )
    return a / norms[:, None]


def fuse_flip(emb: object, emb_flip: object) -> np.ndarray:
    """InsightFace flip test: sum the raw embeddings of an image and of its mirror, normalise.

    Args:
        emb: (N, d) embeddings of the images.
        emb_flip: (N, d) embeddings of the horizontally flipped images.

    Returns:
        (N, d) unit-norm embeddings.
    """
    a = np.asarray(emb)
    b = np.asarray(emb_flip)
    if a.shape != b.shape:
        raise ValueError(
            f"embeddings and flipped embeddings differ in shape: {a.shape} vs {b.shape}"
        )
    return l2_normalize(a + b, "flip-fused embeddings")


def _pair_arrays(emb0: object, emb1: object) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(emb0, dtype=np.float64)
    b = np.asarray(emb1, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"emb0 and emb1 differ in shape: {a.shape} vs {b.shape}")
    return l2_normalize(a, "emb0"), l2_normalize(b, "emb1")


def pair_distances(emb0: object, emb1: object) -> np.ndarray:
    """Squared Euclidean distance (float64, in [0, 4]) between L2-normalised pair embeddings."""
    a, b = _pair_arrays(emb0, emb1)
    return np.sum(np.square(np.subtract(a, b)), axis=1)


def cosine_scores(emb0: object, emb1: object) -> np.ndarray:
    """Cosine similarity (float64) of each pair."""
    a, b = _pair_arrays(emb0, emb1)
    return np.einsum("ij,ij->i", a, b)


def kfold_splits(n: int, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index arrays of sklearn ``KFold(folds, shuffle=False)``.

    Folds are contiguous in order; the first ``n % folds`` folds hold one item more. With
    ``folds == 1`` train and test are both everything (InsightFace's ``LFold``).
    """
    if folds < 1:
        raise ValueError(f"folds must be at least 1, got {folds}")
    if folds > n:
        raise ValueError(f"cannot split {n} pairs into {folds} folds")
    idx = np.arange(n)
    if folds == 1:
        return [(idx, idx)]
    sizes = np.full(folds, n // folds)
    sizes[: n % folds] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [
        (np.concatenate([idx[:lo], idx[hi:]]), idx[lo:hi])
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]


def _below_counts(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many values are strictly below each threshold."""
    return np.searchsorted(sorted_values, thresholds, side="left")


def _correct_counts(dist: np.ndarray, same: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Correct decisions (genuine iff distance < threshold) at each threshold."""
    gen = np.sort(dist[same])
    imp = np.sort(dist[~same])
    return _below_counts(gen, thresholds) + (imp.shape[0] - _below_counts(imp, thresholds))


def _val_threshold(far: np.ndarray, thresholds: np.ndarray, target: float) -> float:
    """The threshold InsightFace gets from ``interp1d(far, thresholds, kind="slinear")``.

    That spline (degree 1 on mergesorted FARs, duplicates kept) joins the last threshold of
    the largest FAR value <= target with the first threshold of the next FAR value; at an
    exact FAR value it gives that value's last threshold.
    """
    if far.max() < target:
        return 0.0
    order = np.argsort(far, kind="stable")
    xs, ts = far[order], thresholds[order]
    g = int(np.searchsorted(xs, target, side="right")) - 1
    if g < 0:
        raise ValueError(
            f"every VAL threshold gives FAR above {target:g}; include a threshold of 0"
        )
    if xs[g] == target or g == xs.shape[0] - 1:
        return float(ts[g])
    return float(ts[g] + (ts[g + 1] - ts[g]) * (target - xs[g]) / (xs[g + 1] - xs[g]))


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def _val_far_fold(
    dist: np.ndarray,
    same: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    thresholds: np.ndarray,
    target: float,
) -> tuple[float, float]:
    imp_train = np.sort(dist[train][~same[train]])
    if imp_train.shape[0] == 0:
        return math.nan, math.nan
    far_train = _below_counts(imp_train, thresholds) / imp_train.shape[0]
    thr = _val_threshold(far_train, thresholds, target)
    d, y = dist[test], same[test]
    val = _ratio(int(np.sum((d < thr) & y)), int(y.sum()))
    far = _ratio(int(np.sum((d < thr) & ~y)), int((~y).sum()))
    return val, far


def _check_thresholds(thresholds: object, what: str) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim != 1 or t.shape[0] == 0 or not np.all(np.isfinite(t)):
        raise ValueError(f"{what} must be a non-empty 1-D array of finite numbers")
    return t


@dataclass(frozen=True)
class KFoldResult:
    """InsightFace 10-fold verification accuracy.

    Attributes:
        accuracy: mean of the fold accuracies.
        std: population standard deviation of the fold accuracies (``np.std``).
        fold_accuracies: accuracy on each held-out fold.
        fold_thresholds: the squared-distance threshold chosen for each fold.
        val: InsightFace VAL (TAR) at ``far_target``, mean over folds (NaN if a fold lacks
            genuine or impostor pairs).
        val_std: population std of VAL over folds.
        far: the FAR actually reached, mean over folds.
        far_target: the FAR for VAL.
        num_pairs: number of pairs.
        protocol: the protocol, in words.
    """

    accuracy: float
    std: float
    fold_accuracies: np.ndarray
    fold_thresholds: np.ndarray
    val: float
    val_std: float
    far: float
    far_target: float
    num_pairs: int
    protocol: str = KFOLD_PROTOCOL

    def __str__(self) -> str:
        folds = len(self.fold_accuracies)
        return (
            f"{self.protocol.replace('10-fold', f'{folds}-fold')}: accuracy "
            f"{100 * self.accuracy:.2f} +- {100 * self.std:.2f}% over {self.num_pairs} pairs; "
            f"VAL@FAR={self.far_target:g} {100 * self.val:.2f} +- {100 * self.val_std:.2f}% "
            f"(FAR reached {self.far:.2e})"
        )


def kfold_accuracy(
    emb0: object,
    emb1: object,
    issame: object,
    folds: int = 10,
    thresholds: object = INSIGHTFACE_THRESHOLDS,
    far_target: float = 1e-3,
    val_thresholds: object = INSIGHTFACE_VAL_THRESHOLDS,
) -> KFoldResult:
    """InsightFace k-fold verification accuracy (and VAL@FAR), see the module docstring.

    Args:
        emb0: (P, d) embeddings of the first image of each pair, in file order.
        emb1: (P, d) embeddings of the second image of each pair.
        issame: (P,) booleans (or 0/1), True for genuine pairs.
        folds: number of contiguous folds (1 = train and test on everything).
        thresholds: squared-distance thresholds, searched in the given order (ties -> first).
        far_target: FAR at which VAL is reported.
        val_thresholds: increasing thresholds for the VAL threshold search.

    Returns:
        A :class:`KFoldResult`.
    """
    dist = pair_distances(emb0, emb1)
    if np.ndim(issame) != 1 or len(issame) != dist.shape[0]:
        raise ValueError(
            f"issame must hold one flag per pair: {dist.shape[0]} pairs, "
            f"issame of shape {np.shape(issame)}"
        )
    _, same = validate_scores_labels(dist, issame)
    thr = _check_thresholds(thresholds, "thresholds")
    vthr = _check_thresholds(val_thresholds, "val_thresholds")
    accs, best_thr, vals, fars = [], [], [], []
    for train, test in kfold_splits(dist.shape[0], folds):
        correct = _correct_counts(dist[train], same[train], thr)
        t = thr[int(np.argmax(correct))]
        right = int(_correct_counts(dist[test], same[test], np.array([t]))[0])
        accs.append(right / test.shape[0])
        best_thr.append(t)
        val, far = _val_far_fold(dist, same, train, test, vthr, far_target)
        vals.append(val)
        fars.append(far)
    accs_a = np.array(accs)
    vals_a = np.array(vals)
    return KFoldResult(
        accuracy=float(np.mean(accs_a)),
        std=float(np.std(accs_a)),
        fold_accuracies=accs_a,
        fold_thresholds=np.array(best_thr),
        val=float(np.mean(vals_a)),
        val_std=float(np.std(vals_a)),
        far=float(np.mean(fars)),
        far_target=far_target,
        num_pairs=int(dist.shape[0]),
    )


@dataclass(frozen=True)
class BestThresholdResult:
    """OpenSphere best-threshold verification.

    Attributes:
        accuracy: accuracy at the best single cosine threshold.
        threshold: that threshold (pairs with ``score >= threshold`` are called genuine; the
            highest such threshold when several tie; ``inf`` = reject everything).
        eer: equal error rate (NaN when the pairs hold only one class).
        auc: area under the ROC (NaN when only one class).
        tpr_at_fpr: TPR at each target FPR, each labelled with its read method (empty when
            only one class).
        num_genuine: genuine pairs.
        num_impostor: impostor pairs.
        protocol: the protocol, in words.
    """

    accuracy: float
    threshold: float
    eer: float
    auc: float
    tpr_at_fpr: tuple[TprAtFpr, ...]
    num_genuine: int
    num_impostor: int
    protocol: str = BEST_THRESHOLD_PROTOCOL

    def __str__(self) -> str:
        n = self.num_genuine + self.num_impostor
        lines = [
            f"{self.protocol}: accuracy {100 * self.accuracy:.2f}% at cosine >= "
            f"{self.threshold:.4f} over {n} pairs; EER {100 * self.eer:.2f}%, "
            f"AUC {100 * self.auc:.2f}%"
        ]
        lines += [f"  {r}" for r in self.tpr_at_fpr]
        return "\n".join(lines)


def best_threshold_accuracy(
    scores: object,
    issame: object,
    fprs: Sequence[float] = OPENSPHERE_FPRS,
    methods: ReadMethod | Sequence[ReadMethod] = READ_METHODS,
) -> BestThresholdResult:
    """OpenSphere protocol on similarity scores, exact over every distinct threshold.

    Args:
        scores: (P,) cosine scores (higher = more similar).
        issame: (P,) booleans (or 0/1), True for genuine pairs.
        fprs: targets for TPR@FPR.
        methods: how TPR is read at each target (see :mod:`sphereface2.metrics.roc`).

    Returns:
        A :class:`BestThresholdResult`. With one class only, accuracy is still defined
        (accept or reject everything) while EER, AUC and TPR@FPR are NaN / empty.
    """
    s, y = validate_scores_labels(scores, issame)
    num_genuine = int(y.sum())
    num_impostor = int(y.shape[0] - num_genuine)
    thresholds, tps, fps = threshold_counts(s, y)
    correct = tps + (num_impostor - fps)
    best = int(np.argmax(correct))
    eer = auc = math.nan
    reads: tuple[TprAtFpr, ...] = ()
    if num_genuine and num_impostor:
        roc = RocCurve(thresholds, tps, fps, num_genuine, num_impostor)
        eer, auc = equal_error_rate(roc), roc_auc(roc)
        reads = tpr_at_fpr(roc, fprs, methods)
    return BestThresholdResult(
        accuracy=int(correct[best]) / y.shape[0],
        threshold=float(thresholds[best]),
        eer=eer,
        auc=auc,
        tpr_at_fpr=reads,
        num_genuine=num_genuine,
        num_impostor=num_impostor,
    )


@dataclass(frozen=True)
class VerificationResult:
    """Both protocols on one set of pairs."""

    name: str
    kfold: KFoldResult
    best_threshold: BestThresholdResult

    def __str__(self) -> str:
        return f"[{self.name}]\n  {self.kfold}\n  " + str(self.best_threshold).replace("\n", "\n  ")


def evaluate_pairs(
    emb0: object,
    emb1: object,
    issame: object,
    name: str = "pairs",
    folds: int = 10,
    thresholds: object = INSIGHTFACE_THRESHOLDS,
    fprs: Sequence[float] = OPENSPHERE_FPRS,
    methods: ReadMethod | Sequence[ReadMethod] = READ_METHODS,
) -> VerificationResult:
    """Run the InsightFace 10-fold and the OpenSphere best-threshold protocols on pairs."""
    try:
        kfold = kfold_accuracy(emb0, emb1, issame, folds=folds, thresholds=thresholds)
        best = best_threshold_accuracy(cosine_scores(emb0, emb1), issame, fprs, methods)
    except ValueError as e:
        raise ValueError(f"verification set {name!r}: {e}") from e
    return VerificationResult(name=name, kfold=kfold, best_threshold=best)


@dataclass(frozen=True)
class CombinedVerificationResult:
    """Each set on its own, and the union of their pairs evaluated with one threshold."""

    per_set: tuple[VerificationResult, ...]
    combined: VerificationResult

    def __str__(self) -> str:
        return "\n".join(str(r) for r in (*self.per_set, self.combined))


PairSet = tuple[str, object, object, object]


def combined_verification(
    sets: Sequence[PairSet],
    folds: int = 10,
    thresholds: object = INSIGHTFACE_THRESHOLDS,
    fprs: Sequence[float] = OPENSPHERE_FPRS,
    methods: ReadMethod | Sequence[ReadMethod] = READ_METHODS,
) -> CombinedVerificationResult:
    """Evaluate several pair sets alone and pooled (the paper's combined metric).

    The pooled pairs are the sets concatenated in the given order; the OpenSphere protocol on
    them uses one global threshold, and the 10-fold protocol uses contiguous folds over the
    concatenation.

    Args:
        sets: ``(name, emb0, emb1, issame)`` per set; names must be distinct.
        folds, thresholds, fprs, methods: as in :func:`evaluate_pairs`.
    """
    if not sets:
        raise ValueError("combined_verification needs at least one pair set")
    names = [s[0] for s in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"pair set names must be distinct, got {names}")
    dims = {np.shape(e0)[-1] for _, e0, _, _ in sets}
    if len(dims) != 1:
        raise ValueError(f"pair sets have different embedding sizes: {sorted(dims)}")
    per_set = tuple(
        evaluate_pairs(e0, e1, same, name, folds, thresholds, fprs, methods)
        for name, e0, e1, same in sets
    )
    pooled = evaluate_pairs(
        np.concatenate([np.asarray(e0, dtype=np.float64) for _, e0, _, _ in sets]),
        np.concatenate([np.asarray(e1, dtype=np.float64) for _, _, e1, _ in sets]),
        np.concatenate([np.asarray(same).astype(bool) for _, _, _, same in sets]),
        name="combined(" + "+".join(names) + ")",
        folds=folds,
        thresholds=thresholds,
        fprs=fprs,
        methods=methods,
    )
    return CombinedVerificationResult(per_set=per_set, combined=pooled)
