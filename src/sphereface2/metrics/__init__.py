"""Metrics: arrays in, results out (ROC, verification protocols, IJB, MegaFace, label audit).

Nothing here opens an image or runs a model; every function takes embeddings or scores and
metadata, so it works on features from any source (ONNX, another framework). The file
readers of the benchmarks (IJB meta files, MegaFace feature files) live in
:mod:`sphereface2.data`.
"""

from sphereface2.metrics.ijb import (
    ijb_1n,
    ijb_1n_over_galleries,
    ijb_11,
    merge_galleries,
    score_template_pairs,
    tar_at_far,
    template_features,
)
from sphereface2.metrics.megaface import (
    megaface_evaluate,
    megaface_identification,
    megaface_verification,
)
from sphereface2.metrics.roc import equal_error_rate, roc_auc, roc_curve, tpr_at_fpr
from sphereface2.metrics.verification import (
    best_threshold_accuracy,
    combined_verification,
    cosine_scores,
    evaluate_pairs,
    fuse_flip,
    kfold_accuracy,
)

__all__ = [
    "best_threshold_accuracy",
    "combined_verification",
    "cosine_scores",
    "equal_error_rate",
    "evaluate_pairs",
    "fuse_flip",
    "ijb_11",
    "ijb_1n",
    "ijb_1n_over_galleries",
    "kfold_accuracy",
    "megaface_evaluate",
    "megaface_identification",
    "megaface_verification",
    "merge_galleries",
    "roc_auc",
    "roc_curve",
    "score_template_pairs",
    "tar_at_far",
    "template_features",
    "tpr_at_fpr",
]
