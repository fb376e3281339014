"""How well a per-sample score finds the mislabelled samples (arrays in, numbers out).

The audit ranks samples by their own-class score, lowest first, so the *suspicion* of a
sample is minus that score. With ``changed`` the samples whose label was really altered
(the positives), and ``n`` their number:

- ``precision_at_n``: the fraction of changed samples among the ``n`` most suspicious ones.
  The cut at ``n`` makes it equal ``recall_at_n`` by construction (both are TP / n); both are
  reported because readers look for either. Samples tied with the last one inside the cut
  count fractionally (the expected value over every order of the tied ones), so the number
  does not depend on how ties happen to be broken.
- ``average_precision``: sum over the distinct suspicion thresholds of
  (recall step) x (precision at that threshold), tied samples entering together (the
  definition ``sklearn.metrics.average_precision_score`` uses).
- ``roc_auc``: area under the tie-aware ROC of the suspicion; a changed/unchanged tie counts
  one half (the Mann-Whitney statistic).
- ``base_rate``: n / N, the precision (and the average precision, in expectation) of a
  random choice of samples; the AUC of a random score is 0.5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sphereface2.metrics.roc import roc_auc, roc_curve, threshold_counts, validate_scores_labels


@dataclass(frozen=True)
class DetectionMetrics:
    """Quality of a ranking as a detector of changed labels (see the module docstring)."""

    num_samples: int
    num_changed: int
    base_rate: float
    precision_at_n: float
    recall_at_n: float
    average_precision: float
    roc_auc: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def expected_hits_at(suspicion: np.ndarray, positive: np.ndarray, k: int) -> float:
    """Expected number of positives among the ``k`` highest ``suspicion`` values when ties
    are broken at random (ties straddling the cut contribute pro rata)."""
    if not 0 <= k <= suspicion.shape[0]:
        raise ValueError(f"cut k={k} outside [0, {suspicion.shape[0]}]")
    if k == 0:
        return 0.0
    cut = np.sort(suspicion)[::-1][k - 1]  # the k-th highest suspicion
    above = suspicion > cut
    tied = suspicion == cut
    taken_from_tie = k - int(above.sum())
    tied_hits = int((positive & tied).sum())
    return float((positive & above).sum()) + taken_from_tie * tied_hits / int(tied.sum())


def average_precision(suspicion: object, positive: object) -> float:
    """Average precision of ``suspicion`` (higher = flagged first) for the ``positive``
    samples, tie-aware (see the module docstring); needs at least one positive."""
    s, y = validate_scores_labels(suspicion, positive)
    num_pos = int(y.sum())
    if num_pos == 0:
        raise ValueError("average precision needs at least one positive sample")
    _, tps, fps = threshold_counts(s, y)
    tps, flagged = tps[1:], (tps + fps)[1:]  # drop the leading "nothing flagged" point
    recall_step = np.diff(np.concatenate([[0], tps])) / num_pos
    return float(np.sum(recall_step * tps / flagged))


def detection_metrics(own_scores: object, changed: object) -> DetectionMetrics:
    """Rank samples by ascending ``own_scores`` and measure how well that finds ``changed``.

    Args:
        own_scores: (N,) score of each sample against its own label (lower = more suspect).
        changed: (N,) booleans, True where the label was altered.

    Raises:
        ValueError: non-finite scores, mismatched lengths, or no changed / no unchanged
            sample (the rates would be undefined).
    """
    scores, positive = validate_scores_labels(own_scores, changed)
    suspicion = -scores
    n, total = int(positive.sum()), int(positive.shape[0])
    if n == 0 or n == total:
        raise ValueError(
            f"detection metrics need changed and unchanged samples; got {n} changed of {total}"
        )
    hits = expected_hits_at(suspicion, positive, n)
    return DetectionMetrics(
        num_samples=total,
        num_changed=n,
        base_rate=n / total,
        precision_at_n=hits / n,
        recall_at_n=hits / n,
        average_precision=average_precision(suspicion, positive),
        roc_auc=roc_auc(roc_curve(suspicion, positive)),
    )
