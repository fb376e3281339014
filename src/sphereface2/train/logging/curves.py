"""Training curves: ``curves.png`` drawn from a run's ``metrics.jsonl``.

Four panels against the iteration: the training loss, the mean positive and negative
cosines (the head's monitoring stats), the learning rate, and the validation accuracy of
every validation set. A panel whose values were never logged says so instead of staying
blank. Usable on its own, on any run folder (finished, stopped or still running):

    >>> from sphereface2.train.logging.curves import plot_training_curves
    >>> plot_training_curves("runs/demo/metrics.jsonl", "runs/demo/curves.png")

Rows are read as the trainer writes them (``kind`` ``train`` or ``val``, ``iteration``,
values). A run resumed after a kill may hold rows of one iteration twice (the killed
process logged past its last checkpoint): the later row wins, as it is the one the
resumed run's weights belong to. Drawing uses matplotlib's Agg canvas directly, so no
window, display or pyplot state is involved.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Series of the "train" rows that the curves show (metrics.jsonl key -> label).
TRAIN_SERIES = {"loss": "loss", "pos_cos": "positive cosine", "neg_cos": "negative cosine"}


@dataclass
class Curves:
    """The values ``plot_training_curves`` draws: ``series`` maps a train-row key to its
    (iterations, values); ``val`` maps a validation set's name to (iterations, accuracy)."""

    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    val: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)


def _rows_by_iteration(path: Path) -> dict[str, dict[int, dict]]:
    """{kind: {iteration: row}}, the last row of an iteration winning; torn lines skipped."""
    rows: dict[str, dict[int, dict]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
                iteration = int(row["iteration"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut by a kill mid-write, or not a metrics row
            rows.setdefault(str(row.get("kind")), {})[iteration] = row
    return rows


def _series(rows: dict[int, dict], key: str) -> tuple[list[int], list[float]]:
    points = [
        (it, float(row[key]))
        for it, row in sorted(rows.items())
        if isinstance(row.get(key), int | float) and not isinstance(row.get(key), bool)
    ]
    return [it for it, _ in points], [value for _, value in points]


def load_curves(metrics_jsonl: str | os.PathLike) -> Curves:
    """Read the plotted series from a ``metrics.jsonl`` (see the module docstring)."""
    rows = _rows_by_iteration(Path(metrics_jsonl))
    train, val = rows.get("train", {}), rows.get("val", {})
    curves = Curves()
    for key in (*TRAIN_SERIES, "lr"):
        its, values = _series(train, key)
        if its:
            curves.series[key] = (its, values)
    names = sorted({k[: -len("_acc")] for row in val.values() for k in row if k.endswith("_acc")})
    for name in names:
        curves.val[name] = _series(val, f"{name}_acc")
    return curves


def plot_training_curves(metrics_jsonl: str | os.PathLike, out_png: str | os.PathLike) -> Path:
    """Draw loss, positive/negative cosine, learning rate and validation accuracy against
    the iteration into ``out_png`` (written whole or not at all). Returns ``out_png``.

    Raises:
        FileNotFoundError: ``metrics_jsonl`` does not exist.
    """
    # imported here: matplotlib takes a second to import and only this function needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    source, out = Path(metrics_jsonl), Path(out_png)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: metrics file not found")
    curves = load_curves(source)
    figure = Figure(figsize=(11, 7.5))
    FigureCanvasAgg(figure)
    # fixed margins: a layout engine would double the drawing time, at the end of every run
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.92, wspace=0.2, hspace=0.2)
    (loss_ax, cos_ax), (lr_ax, val_ax) = figure.subplots(2, 2, sharex=True)
    _draw(loss_ax, curves, ["loss"], "training loss")
    _draw(cos_ax, curves, ["pos_cos", "neg_cos"], "mean cosine to the class proxies")
    _draw(lr_ax, curves, ["lr"], "learning rate")
    val_ax.set_title("validation accuracy (%)")
    for name, (its, accs) in curves.val.items():
        val_ax.plot(its, [100.0 * a for a in accs], marker="o", markersize=3, label=name)
    if curves.val:
        val_ax.legend(loc="best", fontsize="small")
    else:
        _say(val_ax, "no validation rows")
    for ax in (lr_ax, val_ax):
        ax.set_xlabel("iteration")
    for ax in (loss_ax, cos_ax, lr_ax, val_ax):
        ax.grid(True, alpha=0.3)
    figure.suptitle(str(source.parent.name or source), fontsize="medium")
    temp = out.with_name(f".{out.name}.tmp-{os.getpid()}.png")
    try:
        figure.savefig(temp, dpi=100)
        os.replace(temp, out)
    finally:
        temp.unlink(missing_ok=True)
    return out


def _draw(ax: Axes, curves: Curves, keys: list[str], title: str) -> None:
    ax.set_title(title)
    drawn = [key for key in keys if key in curves.series]
    for key in drawn:
        its, values = curves.series[key]
        ax.plot(its, values, linewidth=1.2, label=TRAIN_SERIES.get(key, key))
    if not drawn:
        _say(ax, "not logged")
    elif len(keys) > 1:
        ax.legend(loc="best", fontsize="small")


def _say(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
