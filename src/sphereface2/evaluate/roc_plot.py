"""ROC plots on a log-scale FPR axis (pair sets in ``roc.png``, IJB 1:1 in ``roc_ijb.png``).

An IJB-C ROC has one point per distinct score of 15.6M pairs; a plot needs far fewer.
:func:`roc_points` keeps, for a log-spaced grid of FPRs, the last ROC point at or below each
grid value (the highest TPR reached there): every plotted point is a point of the true curve,
spread evenly over the log axis from the first false accept to FPR 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sphereface2.metrics.roc import RocCurve


@dataclass(frozen=True)
class RocPoints:
    """A curve ready to plot.

    Attributes:
        name: the legend's label.
        fpr, tpr: the points, FPR increasing from its first positive value.
        auc: area under the full curve (NaN: unknown).
        num_genuine, num_impostor: the pairs behind the rates.
    """

    name: str
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    auc: float
    num_genuine: int
    num_impostor: int


def roc_points(
    name: str, roc: RocCurve, auc: float = math.nan, max_points: int = 1000
) -> RocPoints:
    """At most about ``max_points`` points of ``roc`` for a log-FPR plot (see module doc).

    The curve starts at the first positive FPR with the TPR reached just before it (the
    genuine pairs accepted before the first false accept); a curve without false accepts
    below FPR 1 has no point to show on a log axis and comes back empty.
    """
    fpr, tpr = roc.fpr, roc.tpr
    positive = fpr > 0
    if not positive.any():
        empty = np.zeros(0)
        return RocPoints(name, empty, empty, auc, roc.num_genuine, roc.num_impostor)
    first = int(np.argmax(positive))
    grid = np.geomspace(fpr[first], 1.0, max_points)
    picks = np.searchsorted(fpr, grid, side="right") - 1
    idx = np.unique(np.concatenate([[first], picks, [fpr.shape[0] - 1]]))
    idx = idx[idx >= first]
    start = tpr[first - 1] if first > 0 else 0.0
    return RocPoints(
        name,
        np.concatenate([[fpr[first]], fpr[idx]]),
        np.concatenate([[start], tpr[idx]]),
        auc,
        roc.num_genuine,
        roc.num_impostor,
    )


def plot_curves(
    curves: Sequence[RocPoints],
    path: str | Path,
    title: str,
    xlabel: str = "false positive rate (FPR, log scale)",
    ylabel: str = "true positive rate (TPR)",
    empty_note: str = "no set has both genuine and impostor pairs",
) -> Path:
    """One line per curve (legend: name and AUC) on a log-scale x axis, written as PNG with
    matplotlib's Agg canvas (no pyplot, no global backend switch). Empty curves are left
    out; with none left the plot says ``empty_note``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    shown = [c for c in curves if c.fpr.shape[0] > 0]
    for c in shown:
        auc = "n/a" if not math.isfinite(c.auc) else f"{100 * c.auc:.2f}%"
        ax.plot(c.fpr, c.tpr, label=f"{c.name} (AUC {auc})")
    smallest = min((float(c.fpr[0]) for c in shown), default=1e-4 / 0.8)
    ax.set_xscale("log")
    ax.set_xlim(smallest * 0.8, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if shown:
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, empty_note, ha="center", transform=ax.transAxes)
    path = Path(path)
    fig.savefig(path, format="png")
    return path
