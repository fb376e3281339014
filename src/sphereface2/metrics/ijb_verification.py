"""IJB-B / IJB-C 1:1 template verification on per-image features (no images, no models):
template pooling, chunked pair scoring, TAR at FAR and AUC.

Protocol (InsightFace ``eval_ijbc.py`` / ``IJB_evals.py``, OpenSphere ``ijb_dataset.py``):

- Per-image feature: the raw (not normalised) sum of the embeddings of the aligned crop and of
  its mirror, multiplied by the detector's faceness score.
- Template feature: average the image features that share a media id inside the template,
  SUM the media features, L2-normalise (:func:`template_features`; 1:N pools the same way and
  takes its galleries and probes with :func:`take_templates`).
- 1:1: cosine of the two template features of each pair; TAR at FAR 1e-6 ... 1e-1 read from the
  ROC ``"nearest"`` (InsightFace) or ``"interpolated"`` (OpenSphere), each labelled.

1:N identification is :mod:`sphereface2.metrics.ijb_identification`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sphereface2.metrics.roc import (
    READ_METHODS,
    ReadMethod,
    TprAtFpr,
    fpr_resolved,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)

IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)

Device = str | torch.device


# ----------------------------------------------------------------------------- templates


def template_features(
    features: object,
    faceness: object | None,
    template_ids: object,
    media_ids: object,
    use_faceness: bool = True,
    chunk_size: int = 65536,
    dtype: type = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Pool per-image features into L2-normalised template features.

    Each image feature is multiplied by its faceness score (if ``use_faceness``), features
    sharing a media id inside a template are averaged, the media features are summed and the
    sum is L2-normalised. Computed as one weighted sum per template
    (weight = faceness / images in that media), accumulated in float64, ``chunk_size`` images
    at a time.

    Args:
        features: (N, d) per-image features (raw flip sums, not normalised).
        faceness: (N,) detector scores; may be None when ``use_faceness`` is False.
        template_ids: (N,) template id of each image.
        media_ids: (N,) media id of each image.
        use_faceness: weight images by faceness.
        chunk_size: images per accumulation step.
        dtype: dtype of the returned features.

    Returns:
        ``(template_feats (T, d), template_ids (T,) sorted ascending)``.
    """
    f = np.asarray(features)
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"features must be a non-empty (N, d) array, got shape {f.shape}")
    n = f.shape[0]
    tids = _id_array(template_ids, n, "template_ids")
    mids = _id_array(media_ids, n, "media_ids")
    if use_faceness:
        if faceness is None:
            raise ValueError("faceness is required when use_faceness=True")
        w = np.asarray(faceness, dtype=np.float64)
        if w.shape != (n,):
            raise ValueError(f"faceness must have shape ({n},), got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError(
                f"faceness: index {int(np.flatnonzero(~np.isfinite(w))[0])} is not finite"
            )
    else:
        w = np.ones(n)
    unique_t, t_index = np.unique(tids, return_inverse=True)
    _, group, counts = np.unique(
        np.stack([t_index, mids], axis=1), axis=0, return_inverse=True, return_counts=True
    )
    w = w / counts[group.ravel()]
    acc = torch.zeros(unique_t.shape[0], f.shape[1], dtype=torch.float64)
    index = torch.from_numpy(t_index.ravel().astype(np.int64))
    weights = torch.from_numpy(w)
    for lo in range(0, n, chunk_size):
        hi = min(lo + chunk_size, n)
        chunk = torch.from_numpy(np.asarray(f[lo:hi], dtype=np.float64))
        if not torch.isfinite(chunk).all():
            row = lo + int(torch.nonzero(~torch.isfinite(chunk).all(1))[0])
            raise ValueError(f"features: row {row} is not finite")
        acc.index_add_(0, index[lo:hi], chunk * weights[lo:hi, None])
    pooled = acc.numpy()
    norms = np.linalg.norm(pooled, axis=1)
    if np.any(norms == 0):
        bad = unique_t[np.flatnonzero(norms == 0)[0]]
        raise ValueError(
            f"template {bad}: pooled feature is zero (zero features or zero faceness scores)"
        )
    return (pooled / norms[:, None]).astype(dtype), unique_t


def _id_array(ids: object, n: int, what: str) -> np.ndarray:
    a = np.asarray(ids)
    if a.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},), got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


class _TemplateIndex:
    """Maps template ids to rows of a template table (ids must be unique).

    Uses a dense lookup table when the ids are small non-negative integers (as in IJB), else a
    binary search; built once, then applied chunk by chunk.
    """

    def __init__(self, template_ids: np.ndarray) -> None:
        self.ids = template_ids
        lo = int(template_ids.min())
        hi = int(template_ids.max())
        self.table: np.ndarray | None = None
        if lo >= 0 and hi <= 10 * template_ids.shape[0] + 1_000_000:
            self.table = np.full(hi + 1, -1, dtype=np.int64)
            self.table[template_ids] = np.arange(template_ids.shape[0])
        else:
            self.order = np.argsort(template_ids, kind="stable")
            self.sorted_ids = template_ids[self.order]

    def rows(self, wanted: np.ndarray, what: str, offset: int = 0) -> np.ndarray:
        """Row of each wanted id; a missing id raises naming ``what[index]``."""
        if self.table is not None:
            inside = (wanted >= 0) & (wanted < self.table.shape[0])
            rows = self.table[np.where(inside, wanted, 0)]
            missing = ~inside | (rows < 0)
        else:
            pos = np.minimum(np.searchsorted(self.sorted_ids, wanted), self.ids.shape[0] - 1)
            missing = self.sorted_ids[pos] != wanted
            rows = self.order[pos]
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise ValueError(
                f"{what}[{i + offset}] = template {wanted[i]} has no template feature "
                f"({int(missing.sum())} such entr(ies))"
            )
        return rows


def _check_unique_ids(template_ids: np.ndarray, what: str) -> None:
    u, c = np.unique(template_ids, return_counts=True)
    if np.any(c > 1):
        raise ValueError(f"{what}: template {u[np.flatnonzero(c > 1)[0]]} appears twice")


def take_templates(template_feats: object, template_ids: object, wanted: object) -> np.ndarray:
    """Rows of ``template_feats`` for the template ids in ``wanted`` (e.g. a 1:N gallery)."""
    feats = np.asarray(template_feats)
    ids = _id_array(template_ids, feats.shape[0], "template_ids")
    _check_unique_ids(ids, "template_ids")
    want = np.asarray(wanted).astype(np.int64).ravel()
    return feats[_TemplateIndex(ids).rows(want, "wanted")]


# ----------------------------------------------------------------------------- 1:1


def score_template_pairs(
    template_feats: object,
    template_ids: object,
    pairs_t1: object,
    pairs_t2: object,
    chunk_size: int = 16384,
    device: Device = "cpu",
) -> np.ndarray:
    """Cosine score of every template pair, ``chunk_size`` pairs at a time.

    Memory beyond the inputs and the (P,) float64 output is two (chunk_size, d) gathers; the
    computation runs in the dtype of ``template_feats`` (normalised rows expected, as from
    :func:`template_features`), with numpy on the CPU and torch on other devices.

    Returns:
        (P,) float64 scores.
    """
    feats = np.ascontiguousarray(template_feats)
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise ValueError(f"template_feats must be a non-empty (T, d) array, got {feats.shape}")
    ids = _id_array(template_ids, feats.shape[0], "template_ids")
    _check_unique_ids(ids, "template_ids")
    index = _TemplateIndex(ids)
    t1 = np.asarray(pairs_t1)
    t2 = np.asarray(pairs_t2)
    if t1.ndim != 1 or t1.shape != t2.shape:
        raise ValueError(f"pair lists must be 1-D of equal length, got {t1.shape} and {t2.shape}")
    on_cpu = torch.device(device).type == "cpu"
    table = None if on_cpu else torch.from_numpy(feats).to(device)
    out = np.empty(t1.shape[0], dtype=np.float64)
    for lo in range(0, t1.shape[0], chunk_size):
        hi = min(lo + chunk_size, t1.shape[0])
        r1 = index.rows(t1[lo:hi].astype(np.int64, copy=False), "pairs_t1", lo)
        r2 = index.rows(t2[lo:hi].astype(np.int64, copy=False), "pairs_t2", lo)
        if table is None:
            out[lo:hi] = np.einsum("ij,ij->i", feats[r1], feats[r2])
        else:
            out[lo:hi] = _pair_dots_torch(table, r1, r2)
    return out


def _pair_dots_torch(table: torch.Tensor, rows1: np.ndarray, rows2: np.ndarray) -> np.ndarray:
    """Row-wise dot products of gathered table rows, on the table's device."""
    a = table[torch.from_numpy(rows1).to(table.device)]
    b = table[torch.from_numpy(rows2).to(table.device)]
    return torch.linalg.vecdot(a, b).double().cpu().numpy()


def tar_at_far(
    scores: object,
    labels: object,
    fars: Sequence[float] = IJB_FARS,
    methods: ReadMethod | Sequence[ReadMethod] = READ_METHODS,
) -> tuple[TprAtFpr, ...]:
    """TAR at each FAR from pair scores and labels (see :mod:`sphereface2.metrics.roc`)."""
    return tpr_at_fpr(roc_curve(scores, labels), fars, methods)


@dataclass(frozen=True)
class IJBVerificationResult:
    """IJB 1:1 template verification."""

    tar_at_far: tuple[TprAtFpr, ...]
    auc: float
    num_genuine: int
    num_impostor: int
    protocol: str = "IJB 1:1 template verification (cosine of pooled template features)"

    def resolves(self, far: float) -> bool:
        """False when there are fewer than 1 / ``far`` impostor pairs (TAR is not measured
        there; :func:`~sphereface2.metrics.roc.fpr_resolved`)."""
        return fpr_resolved(far, self.num_impostor)

    def __str__(self) -> str:
        lines = [
            f"{self.protocol}: {self.num_genuine} genuine, {self.num_impostor} impostor pairs, "
            f"AUC {100 * self.auc:.4f}%"
        ]
        for r in self.tar_at_far:
            line = str(r).replace("TPR@FPR", "TAR@FAR")
            if not self.resolves(r.fpr):
                line = f"{line.rsplit(': ', 1)[0]}: n/a ({self.num_impostor:,} impostor pairs)"
            lines.append(f"  {line}")
        return "\n".join(lines)


def ijb_11(
    template_feats: object,
    template_ids: object,
    pairs_t1: object,
    pairs_t2: object,
    labels: object,
    fars: Sequence[float] = IJB_FARS,
    methods: ReadMethod | Sequence[ReadMethod] = READ_METHODS,
    chunk_size: int = 16384,
    device: Device = "cpu",
) -> IJBVerificationResult:
    """Score all template pairs and read TAR@FAR (both methods by default) and AUC."""
    scores = score_template_pairs(
        template_feats, template_ids, pairs_t1, pairs_t2, chunk_size, device
    )
    roc = roc_curve(scores, labels)
    return IJBVerificationResult(
        tar_at_far=tpr_at_fpr(roc, fars, methods),
        auc=roc_auc(roc),
        num_genuine=roc.num_genuine,
        num_impostor=roc.num_impostor,
    )
