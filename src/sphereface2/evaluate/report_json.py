"""The evaluation report as a JSON-ready dict (``report.json``): rates as fractions in [0, 1],
NaN and inf as null, an unresolvable FAR as null with its reason."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sphereface2.evaluate.report_model import EvaluationReport, TarAtFar
from sphereface2.evaluate.report_tables import flip_words, ordered_sets
from sphereface2.evaluate.runner import SetEvaluation
from sphereface2.metrics.verification import BEST_THRESHOLD_PROTOCOL, KFOLD_PROTOCOL

REPORT_FORMAT = "sphereface2-evaluation"
REPORT_VERSION = 1


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
            "embeddings": flip_words(run.flip),
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
