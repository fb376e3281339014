"""Evaluation reports: a Markdown page, a JSON summary, ROC plots and a terminal table.

Every number is printed beside the protocol that produced it (InsightFace or OpenSphere code):

- *InsightFace 10-fold*: flip-sum embeddings, squared L2 distance, per-fold best threshold;
  mean +- std of the fold accuracies (and InsightFace's VAL@FAR).
- *OpenSphere best threshold*: cosine scores, one global threshold over all pairs; with
  EER, AUC and TPR@FPR (read by linear interpolation as OpenSphere does, and at the nearest
  ROC point as InsightFace does).
- *Combined*: the pooled pairs of several sets (the paper pools LFW, AgeDB-30, CALFW and
  CPLFW) under both protocols.

Set columns follow the paper's tables: LFW, AgeDB-30, CALFW, CPLFW, then any other set in
the order given, then Combined. IJB-style results are given as ``{far: tar}`` with the
method that read them (``nearest`` or ``interpolated``); they get a table of their own, with
their genuine / impostor pair counts. A FAR below 1 / (impostor pairs) cannot be resolved
(not even one false accept fits under it): such cells read ``n/a (N impostor pairs)``, and
the JSON has null with the reason. IJB 1:1 ROC curves go to ``roc_ijb.png``.
Identification results (IJB 1:N, MegaFace rank-1) are :class:`IdentificationRow` s: named
rates with their protocol, one table per set of columns.

This module writes the files (:func:`write_report`) and draws the ROC plots. The report's data
and :func:`build_report` are :mod:`sphereface2.evaluate.report_model`, its tables and Markdown
page :mod:`sphereface2.evaluate.report_tables`, its JSON summary
:mod:`sphereface2.evaluate.report_json`; their names are re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from sphereface2.evaluate.report_json import (  # noqa: F401  (re-exported: the old import path)
    REPORT_FORMAT,
    REPORT_VERSION,
    report_to_dict,
    set_to_dict,
)
from sphereface2.evaluate.report_model import (  # noqa: F401  (re-exported)
    EvaluationReport,
    IdentificationRow,
    TarAtFar,
    as_tar_at_far,
    build_report,
)
from sphereface2.evaluate.report_tables import (  # noqa: F401  (re-exported)
    IJB_FARS,
    format_text_table,
    identification_tables,
    ijb_rows,
    markdown_report,
    ordered_sets,
    verification_rows,
)
from sphereface2.evaluate.roc_plot import RocPoints, plot_curves, roc_points
from sphereface2.evaluate.runner import SetEvaluation
from sphereface2.metrics.roc import roc_curve


def plot_roc(
    sets: Sequence[SetEvaluation], path: str | Path, title: str = "ROC (cosine scores)"
) -> Path:
    """One ROC curve per set on a log-scale FPR axis, written as PNG (matplotlib, Agg).

    Sets with only genuine or only impostor pairs have no ROC and are left out (the plot
    says so when none is left).
    """
    curves = []
    for s in sets:
        bt = s.result.best_threshold
        if bt.num_genuine and bt.num_impostor:
            curves.append(roc_points(s.name, roc_curve(s.scores, s.issame), bt.auc))
    return plot_curves(curves, path, title)


def plot_ijb_roc(curves: Sequence[RocPoints], path: str | Path, title: str) -> Path:
    """The IJB 1:1 ROC curves (TAR against log-scale FAR), written as PNG."""
    return plot_curves(
        curves,
        path,
        title,
        xlabel="false accept rate (FAR, log scale)",
        ylabel="true accept rate (TAR)",
        empty_note="no benchmark has a false accept below FAR 1",
    )


def write_report(report: EvaluationReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.json``, (with verification results) ``roc.png`` and
    (with IJB curves) ``roc_ijb.png`` into ``out_dir`` (created). Returns the paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    roc_name = None
    if report.verification is not None:
        roc_name = "roc.png"
        flip = "flip-sum" if report.verification.flip else "no flip"
        written["roc"] = plot_roc(
            report.verification.all_sets(),
            out / roc_name,
            title=f"{report.model}: ROC of cosine scores ({flip} embeddings)",
        )
    ijb_roc_name = None
    if report.ijb_roc:
        ijb_roc_name = "roc_ijb.png"
        written["ijb_roc"] = plot_ijb_roc(
            report.ijb_roc, out / ijb_roc_name, title=f"{report.model}: IJB 1:1 ROC"
        )
    written["markdown"] = out / "report.md"
    written["markdown"].write_text(
        markdown_report(report, roc_name, ijb_roc_name), encoding="utf-8"
    )
    written["json"] = out / "report.json"
    written["json"].write_text(
        json.dumps(report_to_dict(report), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    return written
