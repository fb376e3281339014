"""Evaluation: metrics on embedding arrays, and a thin layer that runs models over sets.

The metrics (ROC, verification, IJB, MegaFace) live in :mod:`sphereface2.metrics` and are
re-exported here; they take embeddings and metadata, never models. ``runner``,
``ijb_runner`` and ``megaface_runner`` embed datasets with a model; ``report`` writes
Markdown, JSON and ROC plots with the protocol named beside every number.
"""

from sphereface2.data.ijb_meta import IJBFormatError, read_ijb_meta
from sphereface2.data.megaface_features import read_feature, read_features, write_feature
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
    "IJBFormatError",
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
    "read_feature",
    "read_features",
    "read_ijb_meta",
    "roc_auc",
    "roc_curve",
    "score_template_pairs",
    "tar_at_far",
    "template_features",
    "tpr_at_fpr",
    "write_feature",
]
