"""Write a label audit: ``audit.csv`` (every sample, most suspicious first), ``audit.json``
(the summary) and ``audit_worst.png`` (a contact sheet of the worst samples); and the
short table the command prints.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from sphereface2.evaluate.label_audit import AuditResult
from sphereface2.evaluate.label_audit_plot import plot_contact_sheet, tensor_to_rgb

CSV_NAME = "audit.csv"
JSON_NAME = "audit.json"
SHEET_NAME = "audit_worst.png"


def write_csv(result: AuditResult, path: str | os.PathLike) -> Path:
    """One row per sample in rank order; ``id`` is the image path or the record key."""
    rows = result.rows()
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["rank"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()})
    return path


def _caption(result: AuditResult, row: dict) -> str:
    other = row["best_other_class"]
    other_text = f"{result.label_name(other)} {row['best_other_cosine']:.3f}" if other >= 0 else "-"
    lines = [
        f"#{row['rank']}  i={row['index']}" + ("  changed" if row["injected"] == "yes" else ""),
        f"label {result.label_name(row['label'])} {row['own_cosine']:.3f}",
        f"best other {other_text}",
    ]
    return "\n".join(lines)


def write_contact_sheet(result: AuditResult, path: str | os.PathLike, top: int = 64) -> Path:
    """The ``top`` most suspicious samples as the model saw them (after resizing)."""
    if top < 0:
        raise ValueError(f"top must be >= 0, got {top}")
    rows = result.rows(top)
    images = [tensor_to_rgb(result.dataset[row["index"]][0]) for row in rows]
    captions = [_caption(result, row) for row in rows]
    title = (
        f"{len(rows)} lowest own-class cosines of {result.num_samples} ({result.head} head, "
        f"{Path(result.run).name})"
    )
    return plot_contact_sheet(images, captions, path, columns=8, title=title)


def write_audit(result: AuditResult, out_dir: str | os.PathLike, top: int = 64) -> dict[str, Path]:
    """Write the csv, the contact sheet and the json (listing the files) into ``out_dir``
    (created); returns the paths by kind and records them in ``result.files``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "csv": write_csv(result, out / CSV_NAME),
        "png": write_contact_sheet(result, out / SHEET_NAME, top),
        "json": out / JSON_NAME,
    }
    result.files = {kind: str(path) for kind, path in files.items()}
    summary = result.to_dict()
    summary["top"] = top
    files["json"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return files


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_summary(result: AuditResult, worst: int = 5) -> str:
    """A few lines for the terminal: what was audited, the detection table, the worst rows."""
    own = result.scores.own
    lines = [
        f"label audit of {result.run}: {result.head} head, {result.num_classes} classes, "
        f"{result.num_samples} samples of {result.data}",
        f"labels: {result.label_source}",
        f"own-class cosine: median {float(np.median(own)):.3f}, "
        f"another class closer for {int((result.scores.margin < 0).sum())} samples",
    ]
    m = result.metrics
    if m is not None:
        lines += [
            "",
            f"detecting the {m.num_changed} changed labels ({100 * m.base_rate:.1f}% of samples)",
            f"{'':22}{'ranking':>9}{'random':>9}",
            f"{f'precision@{m.num_changed}':22}{_num(m.precision_at_n):>9}{_num(m.base_rate):>9}",
            f"{f'recall@{m.num_changed}':22}{_num(m.recall_at_n):>9}{_num(m.base_rate):>9}",
            f"{'average precision':22}{_num(m.average_precision):>9}{_num(m.base_rate):>9}",
            f"{'ROC AUC':22}{_num(m.roc_auc):>9}{_num(0.5):>9}",
        ]
    rejects = result.logit_rejects
    if rejects is not None:
        text = f"SphereFace2 rejects {rejects['rejected']} labels (positive logit < 0)"
        if "recall" in rejects:
            text += f": precision {_num(rejects['precision'])}, recall {_num(rejects['recall'])}"
        lines.append(text)
    lines += ["", "most suspicious:"]
    for row in result.rows(worst):
        lines.append(
            f"  #{row['rank']:<3} {row['id']}  label {result.label_name(row['label'])} "
            f"{row['own_cosine']:.3f}  best other {result.label_name(row['best_other_class'])} "
            f"{row['best_other_cosine']:.3f}  changed: {row['injected']}"
        )
    for note in result.notes[1:]:
        lines.append(f"note: {note}")
    if result.files:
        lines.append("wrote " + ", ".join(result.files.values()))
    return "\n".join(lines)
