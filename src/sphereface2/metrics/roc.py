"""ROC curves with exact tie handling, AUC, EER and TPR (TAR) read at given FPR (FAR) values.

Conventions (shared by every metric in ``sphereface2.metrics``):

- A pair is *accepted* (predicted genuine) when ``score >= threshold``; higher scores mean
  more similar (cosine).
- The ROC has one point per distinct score (all pairs tied at a score move together), plus a
  leading point ``(0, 0)`` at threshold ``+inf`` (nothing accepted). This is the curve that
  ``sklearn.metrics.roc_curve(..., drop_intermediate=False)`` returns.
- Reading TPR at a target FPR has two documented conventions; every result says which one
  produced it:

  * ``"nearest"`` (InsightFace, ``eval_ijbc.py``): take sklearn's ``roc_curve`` output (which
    uses ``drop_intermediate=True``), flip it, and pick the first point minimising
    ``|fpr - target|``; so on ties of distance the point with the larger FPR wins, and among
    points with equal FPR the one with the largest TPR.
  * ``"interpolated"`` (OpenSphere, ``get_results``): ``scipy.interpolate.interp1d(fpr, tpr)``
    at the target, i.e. linear interpolation between the last ROC point with
    ``fpr < target`` and the first with ``fpr >= target``. Where the curve has a vertical
    segment exactly at the target this gives the lowest TPR on it (left-continuous).

- Degenerate inputs: an ROC needs at least one genuine and one impostor pair; otherwise
  :func:`roc_curve` raises :class:`ValueError` (a rate with an empty denominator is undefined).
  Scores must be finite: NaN or infinite scores raise :class:`ValueError` naming the first
  offending index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

ReadMethod = Literal["nearest", "interpolated"]
READ_METHODS: tuple[ReadMethod, ...] = ("nearest", "interpolated")

_METHOD_ORIGIN = {
    "nearest": "nearest ROC point, InsightFace",
    "interpolated": "linear interpolation, OpenSphere",
}


def validate_scores_labels(scores: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert similarity scores and genuine/impostor labels.

    Args:
        scores: 1-D array-like of finite similarity scores.
        labels: 1-D array-like of booleans, or integers in {0, 1} (1 = genuine pair).

    Returns:
        ``(scores as float64, labels as bool)``.

    Raises:
        ValueError: on shape or length mismatch, empty input, non-finite scores, or labels
            outside {0, 1}; the message names the first offending index.
    """
    s = np.asarray(scores)
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D, got shapes {s.shape} and {y.shape}")
    if s.shape[0] != y.shape[0]:
        raise ValueError(
            f"scores and labels differ in length: {s.shape[0]} scores, {y.shape[0]} labels"
        )
    if s.shape[0] == 0:
        raise ValueError("no scores given (empty input)")
    if not np.issubdtype(s.dtype, np.number) or np.iscomplexobj(s):
        raise ValueError(f"scores must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    bad = ~np.isfinite(s)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"scores contain {int(bad.sum())} non-finite value(s) (NaN or inf); "
            f"first at index {first}: {s[first].item()!r}"
        )
    if y.dtype != np.bool_:
        if not np.issubdtype(y.dtype, np.number):
            raise ValueError(f"labels must be booleans or 0/1 integers, got dtype {y.dtype}")
        wrong = (y != 0) & (y != 1)
        if wrong.any():
            first = int(np.flatnonzero(wrong)[0])
            raise ValueError(
                "labels must be 0 (impostor) or 1 (genuine); "
                f"index {first} holds {y[first].item()!r}"
            )
        y = y == 1
    return s, y


class TruncatedRocError(ValueError):
    """A truncated ROC (too few impostor scores kept) cannot give the requested reading."""


@dataclass(frozen=True)
class RocCurve:
    """An ROC curve with one point per distinct score threshold.

    Attributes:
        thresholds: decreasing thresholds; ``thresholds[0]`` is ``+inf`` (nothing accepted).
        true_accepts: number of genuine pairs with ``score >= threshold`` at each point.
        false_accepts: number of impostor pairs with ``score >= threshold`` at each point.
        num_genuine: total genuine pairs (the TPR denominator).
        num_impostor: total impostor pairs (the FPR denominator).
        complete: False when the curve was built from only the highest impostor scores
            (:func:`roc_curve_from_top_impostors`); it then stops at the last exactly known
            point, and AUC / EER are undefined.
    """

    thresholds: np.ndarray
    true_accepts: np.ndarray
    false_accepts: np.ndarray
    num_genuine: int
    num_impostor: int
    complete: bool = True

    @property
    def tpr(self) -> np.ndarray:
        """True positive rate (TAR) at each point."""
        return self.true_accepts / self.num_genuine

    @property
    def fpr(self) -> np.ndarray:
        """False positive rate (FAR) at each point."""
        return self.false_accepts / self.num_impostor

    def __len__(self) -> int:
        return int(self.thresholds.shape[0])


def threshold_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Accept counts at every distinct threshold, without the single-class check.

    Two plain sorts (all scores, genuine scores) and a binary search replace an argsort:
    tied pairs are accepted together, so only the counts at each distinct score matter.

    Args:
        scores: validated float64 scores.
        labels: validated boolean labels (True = genuine).

    Returns:
        ``(thresholds, true_accepts, false_accepts)``, each starting with the ``+inf``
        point where nothing is accepted; thresholds decrease.
    """
    n = scores.shape[0]
    ascending = np.sort(scores)
    genuine = np.sort(scores[labels])
    starts = np.flatnonzero(np.concatenate([[True], ascending[1:] != ascending[:-1]]))[::-1]
    thresholds = ascending[starts]
    del ascending
    accepted = n - starts  # pairs with score >= threshold
    tps = genuine.shape[0] - np.searchsorted(genuine, thresholds, side="left")
    zero = np.zeros(1, dtype=np.int64)
    return (
        np.concatenate([[np.inf], thresholds]),
        np.concatenate([zero, tps]),
        np.concatenate([zero, accepted - tps]),
    )


def _require_both_classes(num_genuine: int, num_impostor: int) -> None:
    if num_genuine == 0 or num_impostor == 0:
        raise ValueError(
            "an ROC needs at least one genuine and one impostor pair; got "
            f"{num_genuine} genuine and {num_impostor} impostor pairs"
        )


def roc_curve(scores: object, labels: object) -> RocCurve:
    """Build the tie-aware ROC curve of similarity scores.

    Args:
        scores: 1-D similarity scores (higher = more similar), finite.
        labels: 1-D booleans or 0/1 integers, True/1 for genuine pairs.

    Returns:
        A complete :class:`RocCurve`.

    Raises:
        ValueError: invalid input (see :func:`validate_scores_labels`), or only one class.
    """
    s, y = validate_scores_labels(scores, labels)
    num_genuine = int(y.sum())
    num_impostor = int(y.shape[0] - num_genuine)
    _require_both_classes(num_genuine, num_impostor)
    thresholds, tps, fps = threshold_counts(s, y)
    return RocCurve(thresholds, tps, fps, num_genuine, num_impostor, complete=True)


def roc_curve_from_top_impostors(
    genuine_scores: object, top_impostor_scores: object, num_impostor: int
) -> RocCurve:
    """Build the exact upper part of an ROC when only the highest impostor scores are kept.

    Used where the impostor pairs are too many to hold (MegaFace: probes x 1M distractors).
    Every impostor that was not kept must score ``<= min(top_impostor_scores)``. The curve
    keeps only the points with a threshold above that minimum: those are exact.

    Args:
        genuine_scores: all genuine scores.
        top_impostor_scores: the highest impostor scores (any order).
        num_impostor: total number of impostor pairs (kept or not).

    Returns:
        A :class:`RocCurve` with ``complete=False`` unless every impostor was kept.
    """
    gen = np.asarray(genuine_scores, dtype=np.float64).ravel()
    imp = np.asarray(top_impostor_scores, dtype=np.float64).ravel()
    if num_impostor < imp.shape[0]:
        raise ValueError(
            f"num_impostor ({num_impostor}) is smaller than the {imp.shape[0]} impostor "
            "scores given"
        )
    scores = np.concatenate([gen, imp])
    labels = np.concatenate([np.ones(gen.shape[0], bool), np.zeros(imp.shape[0], bool)])
    s, y = validate_scores_labels(scores, labels)
    _require_both_classes(gen.shape[0], num_impostor)
    thresholds, tps, fps = threshold_counts(s, y)
    if num_impostor == imp.shape[0]:
        return RocCurve(thresholds, tps, fps, gen.shape[0], num_impostor, complete=True)
    if imp.shape[0] == 0:
        raise ValueError("no impostor scores kept: the ROC is unknown above every threshold")
    keep = thresholds > imp.min()
    return RocCurve(
        thresholds[keep], tps[keep], fps[keep], gen.shape[0], num_impostor, complete=False
    )


def roc_auc(roc: RocCurve) -> float:
    """Area under the ROC curve by the trapezoid rule over the tie-aware curve.

    A tie between a genuine and an impostor score therefore counts one half, as in the
    Mann-Whitney statistic (and ``sklearn.metrics.auc`` on ``roc_curve``).
    """
    if not roc.complete:
        raise ValueError("AUC needs the complete ROC curve (this one was truncated)")
    fpr, tpr = roc.fpr, roc.tpr
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) * 0.5))


def equal_error_rate(roc: RocCurve) -> float:
    """Equal error rate: the FPR where the ROC polyline crosses ``fpr = 1 - tpr``.

    This is the root that OpenSphere finds with ``brentq(lambda x: 1 - x - interp(x))``,
    computed exactly on the segment where ``fpr + tpr - 1`` changes sign (on a vertical
    segment the crossing FPR is that segment's FPR).
    """
    if not roc.complete:
        raise ValueError("EER needs the complete ROC curve (this one was truncated)")
    fpr, tpr = roc.fpr, roc.tpr
    h = fpr + tpr - 1.0  # non-decreasing along the curve, from -1 to +1
    j = int(np.argmax(h >= 0.0))
    if h[j] == 0.0 or j == 0:
        return float(fpr[j])
    frac = -h[j - 1] / (h[j] - h[j - 1])
    return float(fpr[j - 1] + frac * (fpr[j] - fpr[j - 1]))


@dataclass(frozen=True)
class TprAtFpr:
    """TPR (TAR) read from an ROC at one target FPR (FAR).

    Attributes:
        fpr: the target FPR.
        tpr: the TPR read at the target.
        method: ``"nearest"`` or ``"interpolated"`` (see the module docstring).
        fpr_used: the FPR of the ROC point that was read (``nearest``), or the target itself
            (``interpolated``).
        threshold: the score threshold of the point read (``nearest``); NaN for
            ``interpolated`` (no single threshold gives an interpolated rate).
    """

    fpr: float
    tpr: float
    method: ReadMethod
    fpr_used: float
    threshold: float

    def __str__(self) -> str:
        return f"TPR@FPR={self.fpr:.0e} ({_METHOD_ORIGIN[self.method]}): {100.0 * self.tpr:.2f}%"


def sklearn_points(roc: RocCurve) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The subset of ROC points that ``sklearn.metrics.roc_curve`` returns by default.

    sklearn drops a point when both the false- and true-accept counts have zero second
    difference there (it lies on a straight, evenly spaced run), keeps the first and last,
    then prepends ``(0, 0)``. Both InsightFace and OpenSphere read TPR from this subset.

    Returns:
        ``(indices, known, mask)``: the kept point indices into ``roc`` (including the
        leading ``+inf`` point); per kept point, whether its being kept is certain (False only
        for the last point of a truncated curve, whose successor is unknown); and the boolean
        keep-mask over all points.
    """
    fps = roc.false_accepts[1:]
    tps = roc.true_accepts[1:]
    keep = np.ones(fps.shape[0], dtype=bool)
    if fps.shape[0] > 2:
        keep[1:-1] = (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0)
    mask = np.concatenate([[True], keep])
    idx = np.flatnonzero(mask)
    known = np.ones(idx.shape[0], dtype=bool)
    if not roc.complete:
        known[idx == len(roc) - 1] = False
    return idx, known, mask


def fpr_resolved(fpr: float, num_impostor: int) -> bool:
    """Whether ``num_impostor`` impostor pairs can resolve the target ``fpr``: with fewer
    than 1 / fpr of them the first false accept already exceeds it, so a TPR read there
    only repeats the ROC's first step (a tolerance keeps 1e-6 x 1e6, which rounds below 1,
    resolved)."""
    return fpr * num_impostor >= 1.0 - 1e-9


def _check_targets(fprs: Sequence[float]) -> list[float]:
    out = []
    for f in fprs:
        f = float(f)
        if not (0.0 < f <= 1.0):
            raise ValueError(f"target FPR must be in (0, 1], got {f!r}")
        out.append(f)
    return out


@dataclass(frozen=True)
class _Points:
    """The sklearn subset of an ROC, as rates, ready for reading."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    known: np.ndarray
    complete: bool
    last_fpr: float


def _points(roc: RocCurve) -> _Points:
    idx, known, _ = sklearn_points(roc)
    return _Points(
        fpr=roc.false_accepts[idx] / roc.num_impostor,
        tpr=roc.true_accepts[idx] / roc.num_genuine,
        thresholds=roc.thresholds[idx],
        known=known,
        complete=roc.complete,
        last_fpr=float(roc.false_accepts[-1] / roc.num_impostor),
    )


def _read_nearest(p: _Points, target: float) -> TprAtFpr:
    # Unknown points of a truncated curve (its last point and everything beyond) have an FPR
    # of at least the last point's; a certain point strictly between the target and that FPR
    # is strictly nearer than all of them, so the answer is exact.
    if not p.complete and not np.any(p.known & (p.fpr > target) & (p.fpr < p.last_fpr)):
        raise TruncatedRocError(
            f"truncated ROC ends at FPR {p.last_fpr:.3g}: not enough impostor scores kept "
            f"to read the nearest point to FPR {target:g}; keep more impostor scores"
        )
    dist = np.abs(p.fpr[::-1] - target)  # flipped, as InsightFace: ties go to the later point
    if not p.complete:
        dist = np.where(p.known[::-1], dist, np.inf)
    pick = p.fpr.shape[0] - 1 - int(np.argmin(dist))
    return TprAtFpr(
        fpr=target,
        tpr=float(p.tpr[pick]),
        method="nearest",
        fpr_used=float(p.fpr[pick]),
        threshold=float(p.thresholds[pick]),
    )


def _read_interpolated(p: _Points, target: float) -> TprAtFpr:
    x, y = p.fpr, p.tpr
    hi = int(np.searchsorted(x, target, side="left"))  # first point with fpr >= target
    if hi >= x.shape[0] or not p.known[hi]:
        raise TruncatedRocError(
            f"truncated ROC ends at FPR {p.last_fpr:.3g}: cannot interpolate at FPR "
            f"{target:g}; keep more impostor scores"
        )
    lo = hi - 1  # exists: x[0] == 0 < target
    # Same arithmetic as scipy's interp1d(kind="linear").
    slope = (y[hi] - y[lo]) / (x[hi] - x[lo])
    tpr = slope * (target - x[lo]) + y[lo]
    return TprAtFpr(
        fpr=target, tpr=float(tpr), method="interpolated", fpr_used=target, threshold=math.nan
    )


def tpr_at_fpr(
    roc: RocCurve,
    fprs: Sequence[float],
    methods: ReadMethod | Sequence[ReadMethod] = READ_METHODS,
) -> tuple[TprAtFpr, ...]:
    """Read TPR at each target FPR with each method (see the module docstring).

    Args:
        roc: the curve.
        fprs: targets in (0, 1].
        methods: ``"nearest"``, ``"interpolated"`` or both.

    Returns:
        One :class:`TprAtFpr` per (method, target), methods outermost, in the order given.
    """
    if isinstance(methods, str):
        methods = (methods,)
    for m in methods:
        if m not in READ_METHODS:
            raise ValueError(f"unknown TPR read method {m!r}; valid: {', '.join(READ_METHODS)}")
    targets = _check_targets(fprs)
    points = _points(roc)
    out: list[TprAtFpr] = []
    for m in methods:
        reader = _read_nearest if m == "nearest" else _read_interpolated
        out.extend(reader(points, f) for f in targets)
    return tuple(out)
