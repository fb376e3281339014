"""Evaluation reports: a Markdown page, a JSON summary, ROC plots and a terminal table.

Every number is printed beside the protocol that produced it (reference.md section 3):

- *InsightFace 10-fold*: flip-sum embeddings, squared L2 distance, per-fold best threshold;
  mean +- std of the fold accuracies (and InsightFace's VAL@FAR).
- *OpenSphere best threshold*: cosine scores, one global threshold over all pairs; with
  EER, AUC and TPR@FPR (read by linear interpolation as OpenSphere does, and at the nearest
  ROC point as InsightFace does).
- *Combined*: the pooled pairs of several sets (the paper pools LFW, AgeDB-30, CALFW and
  CPLFW) under both protocols.

Set columns follow the paper's tables: LFW, AgeDB-30, CALFW, CPLFW, then any other set in
the order given, then Combined. IJB-style results are given as ``{far: tar}`` with the
method that read them (``nearest`` or ``interpolated``); they get a table of their own.
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

from sphereface2.evaluate.roc import roc_curve
from sphereface2.evaluate.runner import SetEvaluation, VerificationRun
from sphereface2.evaluate.verification import BEST_THRESHOLD_PROTOCOL, KFOLD_PROTOCOL
from sphereface2.evaluate.verification_sets import PAPER_SETS

REPORT_FORMAT = "sphereface2-evaluation"
REPORT_VERSION = 1
#: The FARs of IJB tables (reference.md section 3).
IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)

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
    """

    name: str
    tar_at_far: Mapping[float, float]
    method: str
    protocol: str = "1:1 verification"


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
    ``tar_at_far`` is a sequence of :class:`~sphereface2.evaluate.roc.TprAtFpr` reads, such
    as :class:`sphereface2.evaluate.ijb.IJBVerificationResult` (each read carries its own
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
    if isinstance(tars, Sequence) and tars and all(hasattr(r, "method") for r in tars):
        methods = list(dict.fromkeys(r.method for r in tars))
        return [
            TarAtFar(
                name,
                _check_rates(name, {r.fpr: r.tpr for r in tars if r.method == m}),
                m,
                protocol,
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
    return [TarAtFar(name, _check_rates(name, tars), method, protocol)]


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
        settings: anything else worth recording (device, batch size, command line, ...).
        created: ISO time of the evaluation.
    """

    model: str
    model_description: str
    verification: VerificationRun | None = None
    ijb: list[TarAtFar] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    identification: list[IdentificationRow] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def build_report(
    model: str,
    model_description: str,
    verification: VerificationRun | None = None,
    ijb: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    identification: Sequence[IdentificationRow] | None = None,
) -> EvaluationReport:
    """An :class:`EvaluationReport`; ``ijb`` maps benchmark names to results in any form
    :func:`as_tar_at_far` accepts; ``identification`` lists identification rows."""
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
    (those of :data:`IJB_FARS` plus any other given), and the read method."""
    fars = sorted({*IJB_FARS, *(f for r in ijb for f in r.tar_at_far)})
    present = [f for f in fars if any(f in r.tar_at_far for r in ijb)]
    header = ["benchmark [protocol]"] + [f"TAR@FAR={_far_label(f)}" for f in present]
    header.append("TAR read at")
    rows = []
    for r in ijb:
        cells = [_pct(r.tar_at_far[f]) if f in r.tar_at_far else "n/a" for f in present]
        rows.append([f"{r.name} [{r.protocol}]", *cells, _METHOD_WORDS.get(r.method, r.method)])
    return header, rows


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


def markdown_report(report: EvaluationReport, roc_image: str | None = "roc.png") -> str:
    """The report as Markdown (``roc_image``: the ROC plot's file name, or None)."""
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
        out["ijb"] = [
            {
                "name": r.name,
                "protocol": r.protocol,
                "method": r.method,
                "tar_at_far": _finite({repr(far): tar for far, tar in r.tar_at_far.items()}),
            }
            for r in report.ijb
        ]
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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A Figure with its own Agg canvas: no pyplot, no global backend switch.
    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    smallest = 1.0
    plotted = 0
    for s in sets:
        bt = s.result.best_threshold
        if bt.num_genuine == 0 or bt.num_impostor == 0:
            continue
        roc = roc_curve(s.scores, s.issame)
        fpr, tpr = roc.fpr, roc.tpr
        keep = fpr > 0
        if not keep.any():
            continue
        # Start the curve at the first positive FPR, at the TPR reached just before it.
        first = int(np.argmax(keep))
        x = np.concatenate([[fpr[first]], fpr[keep]])
        y = np.concatenate([[tpr[first - 1] if first > 0 else 0.0], tpr[keep]])
        smallest = min(smallest, float(fpr[first]))
        ax.plot(x, y, label=f"{s.name} (AUC {_pct(bt.auc)}%)")
        plotted += 1
    ax.set_xscale("log")
    ax.set_xlim(smallest * 0.8 if plotted else 1e-4, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false positive rate (FPR, log scale)")
    ax.set_ylabel("true positive rate (TPR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if plotted:
        ax.legend(loc="lower right")
    else:
        ax.text(
            0.5,
            0.5,
            "no set has both genuine and impostor pairs",
            ha="center",
            transform=ax.transAxes,
        )
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def write_report(report: EvaluationReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and (with verification results) ``roc.png``
    into ``out_dir`` (created). Returns the paths by kind."""
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
    written["markdown"] = out / "report.md"
    written["markdown"].write_text(markdown_report(report, roc_name), encoding="utf-8")
    written["json"] = out / "report.json"
    written["json"].write_text(
        json.dumps(report_to_dict(report), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    return written
