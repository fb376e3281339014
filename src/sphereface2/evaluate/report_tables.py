"""The evaluation report as text: the verification, TAR@FAR and identification tables (rows
shared by the terminal and Markdown), the aligned terminal table and the Markdown page.

Every number sits beside the protocol that produced it; see :mod:`sphereface2.evaluate.report`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sphereface2.evaluate.report_model import (
    EvaluationReport,
    IdentificationRow,
    TarAtFar,
    far_label,
)
from sphereface2.evaluate.runner import SetEvaluation, VerificationRun
from sphereface2.evaluate.verification_sets import PAPER_SETS
from sphereface2.metrics.verification import BEST_THRESHOLD_PROTOCOL, KFOLD_PROTOCOL

#: The FARs of IJB tables (InsightFace eval_ijbc.py).
IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)

_UNRESOLVED_NOTE = (
    "n/a (N impostor pairs): with N impostor pairs the smallest non-zero FAR is 1/N, so TAR "
    "at a smaller FAR is not measured (a read there only repeats the ROC's first step)."
)

_METHOD_WORDS = {
    "nearest": "nearest ROC point (InsightFace)",
    "interpolated": "linear interpolation (OpenSphere)",
}


# --------------------------------------------------------------------------------------
# Tables (shared by Markdown and the terminal)
# --------------------------------------------------------------------------------------


def ordered_sets(run: VerificationRun) -> list[SetEvaluation]:
    """Columns in the paper's order: its four sets, other sets as given, then Combined."""
    paper = [s for name in PAPER_SETS for s in run.sets if s.name == name]
    others = [s for s in run.sets if s.name not in PAPER_SETS]
    return paper + others + ([run.combined] if run.combined is not None else [])


def _pct(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}"


def verification_rows(run: VerificationRun) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)`` of the verification table; the first cell of every row names the
    metric and its protocol, values are percentages."""
    columns = ordered_sets(run)
    header = ["metric (%) [protocol]"] + [s.name for s in columns]
    rows: list[list[str]] = [
        ["accuracy, mean +- std [InsightFace 10-fold]"]
        + [f"{_pct(s.result.kfold.accuracy)} +- {_pct(s.result.kfold.std)}" for s in columns],
        ["accuracy [OpenSphere best threshold]"]
        + [_pct(s.result.best_threshold.accuracy) for s in columns],
        ["EER [OpenSphere, cosine ROC]"] + [_pct(s.result.best_threshold.eer) for s in columns],
        ["AUC [OpenSphere, cosine ROC]"] + [_pct(s.result.best_threshold.auc) for s in columns],
    ]
    for method in ("interpolated", "nearest"):
        for far in run.fprs:
            label = f"TPR@FPR={far_label(far)} [{_METHOD_WORDS[method]}]"
            cells = []
            for s in columns:
                reads = [
                    r
                    for r in s.result.best_threshold.tpr_at_fpr
                    if r.method == method and r.fpr == far
                ]
                cells.append(_pct(reads[0].tpr) if reads else "n/a")
            rows.append([label] + cells)
    far_target = columns[0].result.kfold.far_target
    rows.append(
        [f"VAL@FAR={far_label(far_target)} [InsightFace 10-fold]"]
        + [_pct(s.result.kfold.val) for s in columns]
    )
    rows.append(["pairs (genuine / impostor)"] + [_pair_counts(s) for s in columns])
    return header, rows


def _pair_counts(s: SetEvaluation) -> str:
    bt = s.result.best_threshold
    return f"{s.num_pairs} ({bt.num_genuine} / {bt.num_impostor})"


def ijb_rows(ijb: Sequence[TarAtFar]) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)`` of the TAR@FAR table: one row per benchmark, one column per FAR
    (those of :data:`IJB_FARS` plus any other given), the read method and, when known, the
    genuine / impostor pair counts. A FAR that the impostor pairs cannot resolve reads
    ``n/a (N impostor pairs)``."""
    fars = sorted({*IJB_FARS, *(f for r in ijb for f in r.tar_at_far)})
    present = [f for f in fars if any(f in r.tar_at_far for r in ijb)]
    counted = any(r.num_impostor is not None for r in ijb)
    header = ["benchmark [protocol]"] + [f"TAR@FAR={far_label(f)}" for f in present]
    header.append("TAR read at")
    if counted:
        header.append("pairs (genuine / impostor)")
    rows = []
    for r in ijb:
        cells = [_tar_cell(r, f) for f in present]
        row = [f"{r.name} [{r.protocol}]", *cells, _METHOD_WORDS.get(r.method, r.method)]
        if counted:
            known = r.num_genuine is not None and r.num_impostor is not None
            row.append(f"{r.num_genuine:,} / {r.num_impostor:,}" if known else "n/a")
        rows.append(row)
    return header, rows


def _tar_cell(r: TarAtFar, far: float) -> str:
    if far not in r.tar_at_far:
        return "n/a"
    if not r.resolves(far):
        return f"n/a ({r.num_impostor:,} impostor pairs)"
    return _pct(r.tar_at_far[far])


def identification_tables(
    rows: Sequence[IdentificationRow],
) -> list[tuple[list[str], list[list[str]]]]:
    """``(header, rows)`` per run of consecutive rows with the same columns (IJB 1:N rows and
    MegaFace rows get tables of their own); values are percentages."""
    tables: list[tuple[list[str], list[list[str]]]] = []
    columns: tuple[str, ...] | None = None
    for r in rows:
        keys = tuple(r.rates)
        if keys != columns:
            columns = keys
            tables.append((["benchmark [protocol]", *(f"{k} (%)" for k in keys), "detail"], []))
        cells = [_pct(float(r.rates[k])) for k in keys]
        tables[-1][1].append([f"{r.name} [{r.protocol}]", *cells, r.detail])
    return tables


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---"] + ["---:"] * (len(header) - 1)
    return "\n".join([line(header), "| " + " | ".join(align) + " |", *(line(r) for r in rows)])


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def format_text_table(report: EvaluationReport) -> str:
    """The report's tables as aligned plain text for a terminal."""
    parts = [f"{report.model}: {report.model_description}"]
    run = report.verification
    if run is not None:
        parts.append(f"verification; embeddings: {flip_words(run.flip)}")
        parts.append(_text_table(*verification_rows(run)))
        if run.combined is not None:
            parts.append(f"Combined = pooled pairs of {', '.join(run.combined.members)}")
    if report.ijb:
        parts.append("TAR (%) at FAR:")
        parts.append(_text_table(*ijb_rows(report.ijb)))
        if any(not r.resolves(f) for r in report.ijb for f in r.tar_at_far):
            parts.append(_UNRESOLVED_NOTE)
    if report.identification:
        parts.append("identification:")
        parts += [_text_table(*t) for t in identification_tables(report.identification)]
    return "\n".join(parts)


def flip_words(flip: bool) -> str:
    if flip:
        return "sum of the raw embeddings of each image and its horizontal flip (flip test)"
    return "the images' own embeddings (no flip test)"


# --------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------


def markdown_report(
    report: EvaluationReport,
    roc_image: str | None = "roc.png",
    ijb_roc_image: str | None = "roc_ijb.png",
) -> str:
    """The report as Markdown (``roc_image`` / ``ijb_roc_image``: the file names of the pair
    and IJB ROC plots, or None)."""
    lines = [
        f"# Evaluation of {report.model}",
        "",
        f"- model: {report.model_description}",
        f"- date: {report.created}",
    ]
    lines += [f"- {key}: {value}" for key, value in report.settings.items()]
    run = report.verification
    if run is not None:
        lines += [
            f"- embeddings: {flip_words(run.flip)}",
            f"- images embedded: {run.num_images} in {run.embed_seconds:.1f} s; metrics "
            f"{run.metric_seconds:.2f} s",
            "",
            "## Verification",
            "",
            "Protocols:",
            "",
            f"- **InsightFace 10-fold**: {KFOLD_PROTOCOL}; thresholds 0, 0.01, ..., 3.99 on "
            f"L2-normalised embeddings; {run.folds} contiguous folds in file order; mean +- "
            "population std over folds. VAL@FAR is InsightFace's validation rate.",
            f"- **OpenSphere best threshold**: {BEST_THRESHOLD_PROTOCOL}; EER, AUC and "
            "TPR@FPR from the tie-aware ROC of the cosine scores; TPR read by linear "
            "interpolation (OpenSphere) and at the nearest ROC point (InsightFace).",
        ]
        if run.combined is not None:
            lines.append(
                f"- **Combined**: the pooled pairs of {', '.join(run.combined.members)} "
                f"({run.combined.num_pairs} pairs) under both protocols, one threshold for all "
                "(OpenSphere) or folds over the concatenation (InsightFace)."
            )
        lines += ["", _markdown_table(*verification_rows(run)), ""]
        lines += ["### Sets", ""]
        for s in run.all_sets():
            bt = s.result.best_threshold
            kf = s.result.kfold
            lines.append(
                f"- **{s.name}**: {s.source}; {s.num_pairs} pairs over {s.num_images} images; "
                f"OpenSphere threshold cosine >= {bt.threshold:.4f}; InsightFace fold "
                f"thresholds (squared L2) {_threshold_range(kf.fold_thresholds)}"
            )
        if roc_image:
            lines += ["", f"![ROC of the cosine scores, log-scale FPR]({roc_image})"]
    if report.ijb:
        lines += ["", "## TAR at FAR", "", _markdown_table(*ijb_rows(report.ijb))]
        if any(not r.resolves(f) for r in report.ijb for f in r.tar_at_far):
            lines += ["", _UNRESOLVED_NOTE]
        if report.ijb_roc and ijb_roc_image:
            lines += ["", f"![IJB 1:1 ROC, log-scale FAR]({ijb_roc_image})"]
    if report.identification:
        lines += ["", "## Identification"]
        for table in identification_tables(report.identification):
            lines += ["", _markdown_table(*table)]
    return "\n".join(lines) + "\n"


def _threshold_range(thresholds: np.ndarray) -> str:
    lo, hi = float(np.min(thresholds)), float(np.max(thresholds))
    return f"{lo:.2f}" if lo == hi else f"{lo:.2f} to {hi:.2f}"
