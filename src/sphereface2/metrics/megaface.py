"""MegaFace challenge 1 metrics on features: FaceScrub-style probes against distractors.

- Identification (rank-k): each probe image in turn is the gallery entry of its identity,
  added to all distractors; every other image of that identity is a query. A query is a hit
  at rank k when fewer than k distractors score at least as high as the gallery image (ties
  count against the probe). The rate is hits over all (query, gallery image) pairs,
  ``sum(m * (m - 1))`` for identities with ``m`` images.
- Verification: genuine pairs are the unordered pairs of probe images of one identity;
  impostor pairs are every probe image against every distractor. TAR at FAR (1e-6 by
  default) is read from the ROC ``"nearest"`` (InsightFace) or ``"interpolated"`` (OpenSphere).

Scores are cosines. Distractors are streamed in chunks through exact matrix products (torch,
on the device given): per probe only the top ``max(ranks)`` distractor scores are kept, and
overall only the highest impostor scores needed to read the ROC at the smallest FARs (the
ROC is exact there; see :func:`sphereface2.metrics.roc.roc_curve_from_top_impostors`).
FAISS is not used: an exact flat search is the same matrix product.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sphereface2.metrics.ijb import Device, exact_ceil
from sphereface2.metrics.roc import (
    READ_METHODS,
    ReadMethod,
    TprAtFpr,
    TruncatedRocError,
    roc_curve_from_top_impostors,
    tpr_at_fpr,
)
from sphereface2.metrics.verification import l2_normalize

MEGAFACE_FARS = (1e-6,)
_BLOCK_ELEMENTS = 1 << 22  # scores held at once per product (16 MiB in float32)


@dataclass(frozen=True)
class DistractorScan:
    """What one pass over the distractors keeps.

    Attributes:
        per_probe_top: (P, R) the R highest distractor scores of each probe, descending
            (``-inf`` where there are fewer than R distractors).
        impostor_top: the K highest probe-distractor scores overall, descending.
        num_distractors: number of distractors scanned.
    """

    per_probe_top: np.ndarray
    impostor_top: np.ndarray
    num_distractors: int


def _probe_tensor(probe_feats: object, device: Device, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(l2_normalize(probe_feats, "probe_feats")).to(device=device, dtype=dtype)


def _scan(
    probes: torch.Tensor,
    distractor_feats: object,
    per_probe_k: int,
    global_k: int,
    chunk_size: int,
) -> DistractorScan:
    d = np.asarray(distractor_feats)
    if d.ndim != 2 or d.shape[1] != probes.shape[1]:
        raise ValueError(
            f"distractor_feats must be (D, {probes.shape[1]}) like the probes, got {d.shape}"
        )
    if d.shape[0] == 0:
        raise ValueError("no distractors given")
    num_probes = probes.shape[0]
    rows_per_block = max(1, _BLOCK_ELEMENTS // max(1, chunk_size))
    top = torch.full((num_probes, per_probe_k), -math.inf, dtype=probes.dtype, device=probes.device)
    best = torch.empty(0, dtype=probes.dtype, device=probes.device)
    for lo in range(0, d.shape[0], chunk_size):
        chunk = l2_normalize(d[lo : lo + chunk_size], "distractor_feats", row_offset=lo)
        dc = torch.from_numpy(chunk).to(device=probes.device, dtype=probes.dtype)
        for p0 in range(0, num_probes, rows_per_block):
            p1 = min(p0 + rows_per_block, num_probes)
            block = probes[p0:p1] @ dc.T
            if per_probe_k:
                k = min(per_probe_k, block.shape[1])
                merged = torch.cat([top[p0:p1], block.topk(k, dim=1).values], dim=1)
                top[p0:p1] = merged.topk(per_probe_k, dim=1).values
            if global_k:
                flat = block.reshape(-1)
                merged = torch.cat([best, flat.topk(min(global_k, flat.shape[0])).values])
                best = merged.topk(min(global_k, merged.shape[0])).values
    return DistractorScan(
        per_probe_top=top.double().cpu().numpy(),
        impostor_top=best.double().cpu().numpy(),
        num_distractors=int(d.shape[0]),
    )


def scan_distractors(
    probe_feats: object,
    distractor_feats: object,
    per_probe_k: int,
    global_k: int,
    chunk_size: int = 8192,
    device: Device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> DistractorScan:
    """One streamed pass of all probes against all distractors (cosine scores).

    Args:
        probe_feats: (P, d) probe features.
        distractor_feats: (D, d) distractor features (any array-like supporting slicing, e.g.
            a ``np.memmap``); normalised ``chunk_size`` rows at a time.
        per_probe_k: how many top scores to keep per probe.
        global_k: how many top probe-distractor scores to keep overall.
        chunk_size: distractors per chunk.
        device: torch device of the products.
        dtype: torch dtype of the products.
    """
    return _scan(
        _probe_tensor(probe_feats, device, dtype),
        distractor_feats,
        per_probe_k,
        global_k,
        chunk_size,
    )


@dataclass(frozen=True)
class _ProbeGroups:
    """Cosine scores among the probe images of each identity (m x m per identity)."""

    members: list[np.ndarray]
    scores: list[np.ndarray]


def _probe_groups(probes: torch.Tensor, probe_ids: object) -> _ProbeGroups:
    ids = np.asarray(probe_ids)
    if ids.shape != (probes.shape[0],):
        raise ValueError(f"probe_ids must have shape ({probes.shape[0]},), got {ids.shape}")
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    members, scores = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi - lo < 2:
            continue
        m = order[lo:hi]
        p = probes[torch.from_numpy(m).to(probes.device)]
        members.append(m)
        scores.append((p @ p.T).double().cpu().numpy())
    if not members:
        raise ValueError("no probe identity has two or more images: there are no queries")
    return _ProbeGroups(members, scores)


@dataclass(frozen=True)
class MegaFaceIdentificationResult:
    """MegaFace rank-k identification.

    Attributes:
        ranks: the ranks k.
        rates: identification rate at each rank.
        hits: hits at each rank.
        num_queries: (query, gallery image) pairs evaluated.
        num_distractors: distractors in the gallery.
    """

    ranks: tuple[int, ...]
    rates: tuple[float, ...]
    hits: tuple[int, ...]
    num_queries: int
    num_distractors: int
    protocol: str = "MegaFace challenge 1 identification (ties count against the probe)"

    def __str__(self) -> str:
        ranks = ", ".join(f"rank-{k} {100 * r:.3f}%" for k, r in zip(self.ranks, self.rates))
        return (
            f"{self.protocol}: {self.num_queries} queries, {self.num_distractors} distractors; "
            + ranks
        )


def _identification(
    groups: _ProbeGroups, scan: DistractorScan, ranks: Sequence[int]
) -> MegaFaceIdentificationResult:
    hits = np.zeros(len(ranks), dtype=np.int64)
    queries = 0
    for members, s in zip(groups.members, groups.scores):
        m = members.shape[0]
        off_diagonal = ~np.eye(m, dtype=bool)
        queries += m * (m - 1)
        for j, k in enumerate(ranks):
            # Row q is the query, column g the gallery image: beat the k-th best distractor.
            kth = scan.per_probe_top[members, k - 1][:, None]
            hits[j] += int(np.sum((s > kth) & off_diagonal))
    return MegaFaceIdentificationResult(
        ranks=tuple(int(k) for k in ranks),
        rates=tuple(int(h) / queries for h in hits),
        hits=tuple(int(h) for h in hits),
        num_queries=queries,
        num_distractors=scan.num_distractors,
    )


@dataclass(frozen=True)
class MegaFaceVerificationResult:
    """MegaFace verification: TAR at FAR over probe-probe genuine and probe-distractor
    impostor pairs.

    Attributes:
        tar_at_far: TAR at each FAR, labelled with its read method.
        num_genuine: genuine pairs.
        num_impostor: impostor pairs (probes x distractors).
        impostors_kept: highest impostor scores kept to read the ROC exactly.
    """

    tar_at_far: tuple[TprAtFpr, ...]
    num_genuine: int
    num_impostor: int
    impostors_kept: int
    protocol: str = "MegaFace challenge 1 verification (probe pairs vs probe x distractor)"

    def __str__(self) -> str:
        lines = [f"{self.protocol}: {self.num_genuine} genuine, {self.num_impostor} impostor pairs"]
        lines += [f"  {str(r).replace('TPR@FPR', 'TAR@FAR')}" for r in self.tar_at_far]
        return "\n".join(lines)


def _genuine_scores(groups: _ProbeGroups) -> np.ndarray:
    parts = [s[np.triu_indices(s.shape[0], k=1)] for s in groups.scores]
    return np.concatenate(parts)


def _check_ranks(ranks: Sequence[int]) -> None:
    if not ranks or any(int(k) < 1 for k in ranks):
        raise ValueError(f"ranks must be positive integers, got {tuple(ranks)}")


def _check_fars(fars: Sequence[float]) -> None:
    if not fars or any(not (0.0 < float(f) <= 1.0) for f in fars):
        raise ValueError(f"FARs must be a non-empty list of values in (0, 1], got {tuple(fars)}")


def megaface_evaluate(
    probe_feats: object,
    probe_ids: object,
    distractor_feats: object,
    ranks: Sequence[int] = (1,),
    fars: Sequence[float] = MEGAFACE_FARS,
    methods: ReadMethod | Sequence[ReadMethod] = READ_METHODS,
    chunk_size: int = 8192,
    device: Device = "cpu",
    dtype: torch.dtype = torch.float32,
    impostor_margin: int = 1024,
) -> tuple[MegaFaceIdentificationResult, MegaFaceVerificationResult]:
    """Identification and verification from one pass over the distractors.

    Args:
        probe_feats: (P, d) probe features (FaceScrub).
        probe_ids: (P,) identity of each probe image.
        distractor_feats: (D, d) distractor features (MegaFace), array or memmap.
        ranks: ranks k for identification.
        fars: FARs for verification.
        methods: how TAR is read at each FAR.
        chunk_size: distractors per chunk.
        device: torch device for the products.
        dtype: torch dtype for the products.
        impostor_margin: impostor scores kept beyond ``ceil(max(fars) x impostors)``; if the
            ROC still cannot be read exactly (long runs of impostor-only thresholds), the
            distractors are scanned again keeping four times as many.
    """
    _check_ranks(ranks)
    _check_fars(fars)
    probes = _probe_tensor(probe_feats, device, dtype)
    groups = _probe_groups(probes, probe_ids)
    num_impostor = probes.shape[0] * int(np.shape(distractor_feats)[0])
    keep = min(num_impostor, exact_ceil(max(fars), num_impostor) + impostor_margin)
    scan = _scan(probes, distractor_feats, max(int(k) for k in ranks), keep, chunk_size)
    identification = _identification(groups, scan, ranks)
    genuine = _genuine_scores(groups)
    while True:
        roc = roc_curve_from_top_impostors(genuine, scan.impostor_top, num_impostor)
        try:
            reads = tpr_at_fpr(roc, fars, methods)
            break
        except TruncatedRocError:
            if keep >= num_impostor:
                raise
            keep = min(num_impostor, 4 * keep)
            scan = _scan(probes, distractor_feats, 0, keep, chunk_size)
    verification = MegaFaceVerificationResult(
        tar_at_far=reads,
        num_genuine=int(genuine.shape[0]),
        num_impostor=num_impostor,
        impostors_kept=int(scan.impostor_top.shape[0]),
    )
    return identification, verification


def megaface_identification(
    probe_feats: object,
    probe_ids: object,
    distractor_feats: object,
    ranks: Sequence[int] = (1,),
    chunk_size: int = 8192,
    device: Device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> MegaFaceIdentificationResult:
    """MegaFace rank-k identification (see the module docstring); arguments as in
    :func:`megaface_evaluate`."""
    _check_ranks(ranks)
    probes = _probe_tensor(probe_feats, device, dtype)
    groups = _probe_groups(probes, probe_ids)
    scan = _scan(probes, distractor_feats, max(int(k) for k in ranks), 0, chunk_size)
    return _identification(groups, scan, ranks)


def megaface_verification(
    probe_feats: object,
    probe_ids: object,
    distractor_feats: object,
    fars: Sequence[float] = MEGAFACE_FARS,
    methods: ReadMethod | Sequence[ReadMethod] = READ_METHODS,
    chunk_size: int = 8192,
    device: Device = "cpu",
    dtype: torch.dtype = torch.float32,
    impostor_margin: int = 1024,
) -> MegaFaceVerificationResult:
    """MegaFace verification TAR@FAR (see the module docstring); arguments as in
    :func:`megaface_evaluate`."""
    _, verification = megaface_evaluate(
        probe_feats,
        probe_ids,
        distractor_feats,
        ranks=(1,),
        fars=fars,
        methods=methods,
        chunk_size=chunk_size,
        device=device,
        dtype=dtype,
        impostor_margin=impostor_margin,
    )
    return verification
