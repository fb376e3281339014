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
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sphereface2.evaluate.roc_plot import RocPoints, plot_curves, roc_points
from sphereface2.evaluate.runner import SetEvaluation, VerificationRun
from sphereface2.evaluate.verification_sets import PAPER_SETS
from sphereface2.metrics.roc import fpr_resolved, roc_curve
from sphereface2.metrics.verification import BEST_THRESHOLD_PROTOCOL, KFOLD_PROTOCOL

REPORT_FORMAT = "sphereface2-evaluation"
REPORT_VERSION = 1
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
# Inputs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TarAtFar:
    """TAR read at several FARs on one template/pair benchmark (IJB-B, IJB-C, ...).

    Attributes:
        name: the benchmark (table row).
        tar_at_far: ``{far: tar}``, rates as fractions in [0, 1].
        method: how TAR was read: ``nearest`` (InsightFace), ``interpolated`` (OpenSphere)
            or a free description.
        protocol: what was evaluated, e.g. ``1:1 template verification``.
        num_genuine, num_impostor: the pairs behind the rates (None: not given).
    """

    name: str
    tar_at_far: Mapping[float, float]
    method: str
    protocol: str = "1:1 verification"
    num_genuine: int | None = None
    num_impostor: int | None = None

    def resolves(self, far: float) -> bool:
        """False when there are fewer than 1 / ``far`` impostor pairs: the ROC's first step
        above FAR 0 is already larger than ``far``, so no threshold reaches it."""
        return self.num_impostor is None or fpr_resolved(far, self.num_impostor)

    def unresolved_reason(self, far: float) -> str:
        """Why TAR at ``far`` is not given (see :meth:`resolves`)."""
        return (
            f"FAR {_far_label(far)} needs at least {math.ceil(1 / far - 1e-9):,} impostor "
            f"pairs; this benchmark has {self.num_impostor:,}"
        )


def _check_rates(name: str, tars: Mapping[Any, Any]) -> dict[float, float]:
    clean: dict[float, float] = {}
    for far, tar in tars.items():
        far, tar = float(far), float(tar)
        if not 0.0 < far <= 1.0 or not (0.0 <= tar <= 1.0 or math.isnan(tar)):
            raise ValueError(f"result {name!r}: TAR {tar!r} at FAR {far!r} is out of range")
        clean[far] = tar
    return dict(sorted(clean.items()))


def as_tar_at_far(name: str, value: Any) -> list[TarAtFar]:
    """Normalise an IJB-style result into one :class:`TarAtFar` per read method.

    Accepts a :class:`TarAtFar`; a mapping ``{"tar_at_far": {far: tar}, "method": ...,
    "protocol": ...}``; an object with such attributes; or an object (or mapping) whose
    ``tar_at_far`` is a sequence of :class:`~sphereface2.metrics.roc.TprAtFpr` reads, such
    as :class:`sphereface2.metrics.ijb.IJBVerificationResult` (each read carries its own
    method: one row per method).
    """
    if isinstance(value, TarAtFar):
        return [value]
    if isinstance(value, Mapping):
        getter = value.get
    else:

        def getter(key: str, default: Any = None) -> Any:
            return getattr(value, key, default)

    tars = getter("tar_at_far")
    protocol = str(getter("protocol", None) or "1:1 verification")
    counts = _counts(name, getter("num_genuine", None), getter("num_impostor", None))
    if isinstance(tars, Sequence) and tars and all(hasattr(r, "method") for r in tars):
        methods = list(dict.fromkeys(r.method for r in tars))
        return [
            TarAtFar(
                name,
                _check_rates(name, {r.fpr: r.tpr for r in tars if r.method == m}),
                m,
                protocol,
                *counts,
            )
            for m in methods
        ]
    method = getter("method")
    if not isinstance(tars, Mapping) or not tars:
        raise ValueError(
            f"result {name!r}: needs a non-empty tar_at_far mapping {{far: tar}} or a "
            "sequence of TprAtFpr reads"
        )
    if not isinstance(method, str) or not method:
        raise ValueError(
            f"result {name!r}: needs the method that read TAR ('nearest' or 'interpolated')"
        )
    return [TarAtFar(name, _check_rates(name, tars), method, protocol, *counts)]


def _counts(name: str, genuine: Any, impostor: Any) -> tuple[int | None, int | None]:
    out = []
    for what, value in (("num_genuine", genuine), ("num_impostor", impostor)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 0):
            raise ValueError(f"result {name!r}: {what} must be a count, got {value!r}")
        out.append(None if value is None else int(value))
    return out[0], out[1]


@dataclass(frozen=True)
class IdentificationRow:
    """Identification rates on one benchmark (IJB 1:N, MegaFace with n distractors, ...).

    Attributes:
        name: the benchmark (table row).
        rates: ``{column: rate}`` in table order, rates as fractions in [0, 1] (NaN: undefined),
            e.g. ``{"top-1": 0.9, "TPIR@FPIR=1e-2 [nonmated-max]": 0.8}``.
        protocol: what was measured and how (the convention, the galleries).
        detail: counts worth showing (probes, distractors).
    """

    name: str
    rates: Mapping[str, float]
    protocol: str
    detail: str = ""

    def __post_init__(self) -> None:
        if not self.rates:
            raise ValueError(f"identification result {self.name!r}: no rates")
        for column, rate in self.rates.items():
            rate = float(rate)
            if not (0.0 <= rate <= 1.0 or math.isnan(rate)):
                raise ValueError(
                    f"identification result {self.name!r}: {column} = {rate!r} is not a rate "
                    "in [0, 1]"
                )


@dataclass
class EvaluationReport:
    """Everything a report shows.

    Attributes:
        model: short model name (table titles).
        model_description: what was loaded and from where.
        verification: the pair-set results, if any.
        ijb: IJB-style TAR@FAR rows (one per benchmark and read method).
        identification: identification rows (IJB 1:N, MegaFace).
        ijb_roc: IJB 1:1 ROC curves to plot (``roc_ijb.png``).
        settings: anything else worth recording (device, batch size, command line, ...).
        created: ISO time of the evaluation.
    """

    model: str
    model_description: str
    verification: VerificationRun | None = None
    ijb: list[TarAtFar] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    identification: list[IdentificationRow] = field(default_factory=list)
    ijb_roc: list[RocPoints] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def build_report(
    model: str,
    model_description: str,
    verification: VerificationRun | None = None,
    ijb: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    identification: Sequence[IdentificationRow] | None = None,
    ijb_roc: Sequence[RocPoints] | None = None,
) -> EvaluationReport:
    """An :class:`EvaluationReport`; ``ijb`` maps benchmark names to results in any form
    :func:`as_tar_at_far` accepts; ``identification`` lists identification rows;
    ``ijb_roc`` the IJB 1:1 curves (:func:`~sphereface2.evaluate.roc_plot.roc_points`)."""
    if verification is None and not ijb and not identification:
        raise ValueError(
            "a report needs verification results or IJB results (or identification results)"
        )
    return EvaluationReport(
        model=model,
        model_description=model_description,
        verification=verification,
        ijb=[row for name, value in (ijb or {}).items() for row in as_tar_at_far(name, value)],
        settings=dict(settings or {}),
        identification=list(identification or []),
        ijb_roc=list(ijb_roc or []),
    )


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


def _far_label(far: float) -> str:
    return f"{far:.0e}".replace("e-0", "e-")


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
            label = f"TPR@FPR={_far_label(far)} [{_METHOD_WORDS[method]}]"
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
        [f"VAL@FAR={_far_label(far_target)} [InsightFace 10-fold]"]
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
    header = ["benchmark [protocol]"] + [f"TAR@FAR={_far_label(f)}" for f in present]
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
        parts.append(f"verification; embeddings: {_flip_words(run.flip)}")
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


def _flip_words(flip: bool) -> str:
    if flip:
        return "sum of the raw embeddings of each image and its horizontal flip (flip test)"
    return "the images' own embeddings (no flip test)"


# --------------------------------------------------------------------------------------
# Markdown and JSON
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
            f"- embeddings: {_flip_words(run.flip)}",
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


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: they become null."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return [_finite(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def set_to_dict(s: SetEvaluation) -> dict[str, Any]:
    """One set's results (rates as fractions in [0, 1]; NaN/inf as null)."""
    kf, bt = s.result.kfold, s.result.best_threshold
    return _finite(
        {
            "name": s.name,
            "source": s.source,
            "members": list(s.members),
            "num_pairs": s.num_pairs,
            "num_genuine": bt.num_genuine,
            "num_impostor": bt.num_impostor,
            "num_images": s.num_images,
            "insightface_10fold": {
                "protocol": kf.protocol,
                "accuracy": kf.accuracy,
                "std": kf.std,
                "fold_accuracies": kf.fold_accuracies,
                "fold_thresholds": kf.fold_thresholds,
                "val": kf.val,
                "val_std": kf.val_std,
                "far": kf.far,
                "far_target": kf.far_target,
            },
            "opensphere_best_threshold": {
                "protocol": bt.protocol,
                "accuracy": bt.accuracy,
                "threshold": bt.threshold,
                "eer": bt.eer,
                "auc": bt.auc,
                "tpr_at_fpr": [
                    {
                        "fpr": r.fpr,
                        "tpr": r.tpr,
                        "method": r.method,
                        "fpr_used": r.fpr_used,
                        "threshold": r.threshold,
                    }
                    for r in bt.tpr_at_fpr
                ],
            },
        }
    )


def _ijb_to_dict(r: TarAtFar) -> dict[str, Any]:
    """One TAR@FAR row; an unresolvable FAR has TAR null and its reason in ``unresolved``."""
    tars = {repr(f): (t if r.resolves(f) else None) for f, t in r.tar_at_far.items()}
    return {
        "name": r.name,
        "protocol": r.protocol,
        "method": r.method,
        "num_genuine": r.num_genuine,
        "num_impostor": r.num_impostor,
        "tar_at_far": _finite(tars),
        "unresolved": {repr(f): r.unresolved_reason(f) for f in r.tar_at_far if not r.resolves(f)},
    }


def report_to_dict(report: EvaluationReport) -> dict[str, Any]:
    """The JSON summary: rates as fractions in [0, 1], NaN/inf as null."""
    out: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "created": report.created,
        "model": {"name": report.model, "description": report.model_description},
        "settings": _finite(dict(report.settings)),
    }
    run = report.verification
    if run is not None:
        out["verification"] = {
            "flip": run.flip,
            "embeddings": _flip_words(run.flip),
            "batch_size": run.batch_size,
            "folds": run.folds,
            "fprs": list(run.fprs),
            "protocols": {
                "insightface_10fold": KFOLD_PROTOCOL,
                "opensphere_best_threshold": BEST_THRESHOLD_PROTOCOL,
            },
            "columns": [s.name for s in ordered_sets(run)],
            "sets": [set_to_dict(s) for s in run.sets],
            "combined": set_to_dict(run.combined) if run.combined is not None else None,
            "timing": {
                "images": run.num_images,
                "embed_seconds": round(run.embed_seconds, 4),
                "metric_seconds": round(run.metric_seconds, 4),
            },
        }
    if report.ijb:
        out["ijb"] = [_ijb_to_dict(r) for r in report.ijb]
    if report.identification:
        out["identification"] = [
            {
                "name": r.name,
                "protocol": r.protocol,
                "detail": r.detail,
                "rates": _finite({k: float(v) for k, v in r.rates.items()}),
            }
            for r in report.identification
        ]
    return out


# --------------------------------------------------------------------------------------
# ROC plot and writing
# --------------------------------------------------------------------------------------


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
