"""IJB-B / IJB-C 1:N open-set identification on template features (no images, no models):
top-k rates and TPIR at FPIR against one gallery, averaged over galleries, or against merged
galleries (see :func:`ijb_1n` for the two TPIR conventions).

Template features come from :func:`sphereface2.metrics.ijb_verification.template_features`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import numpy as np
import torch

from sphereface2.metrics.ijb_verification import Device, _id_array
from sphereface2.metrics.verification import l2_normalize

IJB_FPIRS = (0.01, 0.1)
IJB_RANKS = (1, 5, 10)

TpirConvention = Literal["nonmated-max", "opensphere-pairs"]


def exact_ceil(fraction: float, count: int) -> int:
    """``ceil(fraction * count)`` on the decimal value of ``fraction``: ``0.07 * 100`` is 7, where
    floating point gives 7.000000000000001 and a ceiling of 8."""
    return math.ceil(Fraction(repr(float(fraction))) * count)


@dataclass(frozen=True)
class TpirAtFpir:
    """TPIR at one FPIR.

    Attributes:
        fpir: the target FPIR.
        tpir: the true positive identification rate.
        threshold: the score a mated probe must exceed.
        fpir_achieved: the false positive identification rate at that threshold.
        convention: ``"nonmated-max"`` or ``"opensphere-pairs"`` (see :func:`ijb_1n`).
    """

    fpir: float
    tpir: float
    threshold: float
    fpir_achieved: float
    convention: TpirConvention

    def __str__(self) -> str:
        return f"TPIR@FPIR={self.fpir:g} ({self.convention}): {100 * self.tpir:.2f}%"


@dataclass(frozen=True)
class IJB1NResult:
    """IJB 1:N identification.

    Attributes:
        ranks: the ranks k of the top-k identification rates.
        rates: top-k identification rate of the mated probes, per rank.
        hits: mated probes identified within each rank.
        num_mated: probes whose subject is in the gallery.
        num_nonmated: probes whose subject is not.
        tpir: TPIR at each FPIR.
        protocol: the protocol, in words.
        parts: per-gallery results when averaged over several galleries.
    """

    ranks: tuple[int, ...]
    rates: tuple[float, ...]
    hits: tuple[int, ...]
    num_mated: int
    num_nonmated: int
    tpir: tuple[TpirAtFpir, ...]
    protocol: str = "IJB 1:N identification (cosine, one gallery)"
    parts: tuple[IJB1NResult, ...] = field(default=())

    def __str__(self) -> str:
        ranks = ", ".join(f"top-{k} {100 * r:.2f}%" for k, r in zip(self.ranks, self.rates))
        lines = [
            f"{self.protocol}: {self.num_mated} mated, {self.num_nonmated} non-mated probes; "
            + ranks
        ]
        lines += [f"  {t}" for t in self.tpir]
        return "\n".join(lines)


def _as_tensor_rows(
    x: object, what: str, device: Device, dtype: torch.dtype, row_offset: int = 0
) -> torch.Tensor:
    return torch.from_numpy(l2_normalize(x, what, row_offset)).to(device=device, dtype=dtype)


def _check_ranks_fpirs(ranks: Sequence[int], fpirs: Sequence[float]) -> None:
    if not ranks or any(int(k) < 1 for k in ranks):
        raise ValueError(f"ranks must be positive integers, got {tuple(ranks)}")
    if any(not (0.0 < float(f) <= 1.0) for f in fpirs):
        raise ValueError(f"FPIRs must be in (0, 1], got {tuple(fpirs)}")


def ijb_1n(
    gallery_feats: object,
    gallery_ids: object,
    probe_feats: object,
    probe_ids: object,
    ranks: Sequence[int] = IJB_RANKS,
    fpirs: Sequence[float] = IJB_FPIRS,
    tpir_convention: TpirConvention = "nonmated-max",
    chunk_size: int = 4096,
    device: Device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> IJB1NResult:
    """Open-set 1:N identification of probe templates against one gallery.

    A probe is *mated* when its subject id appears in ``gallery_ids``, *non-mated* otherwise.
    Its rank is 1 + the number of gallery entries of other subjects scoring at least its best
    mated score (ties count against the probe); top-k rate = mated probes of rank <= k over all
    mated probes.

    TPIR conventions:

    - ``"nonmated-max"`` (NIST; InsightFace ``evaluation_1N``): the threshold is the
      ``ceil(FPIR x N)``-th largest of the N non-mated probes' maximum gallery scores; TPIR =
      mated probes of rank 1 whose mated score exceeds it, over all mated probes. Undefined
      (NaN) without non-mated probes, e.g. with a merged gallery S1+S2 or G1+G2: use
      :func:`ijb_1n_over_galleries` instead.
    - ``"opensphere-pairs"`` (OpenSphere ``evaluate_1n``, merged gallery): the threshold is the
      ``ceil(FPIR x Q)``-th largest score among all non-mated (probe, gallery entry) pairs, Q
      the number of probes; TPIR = mated pairs scoring above it, over Q (rank not required).

    ``ceil`` is taken on the decimal value of the FPIR (see :func:`exact_ceil`).

    Args:
        gallery_feats: (G, d) gallery template features.
        gallery_ids: (G,) subject id of each gallery template.
        probe_feats: (Q, d) probe template features.
        probe_ids: (Q,) subject id of each probe.
        ranks: ranks k for the top-k identification rates.
        fpirs: FPIRs in (0, 1].
        tpir_convention: see above.
        chunk_size: probes scored per matrix product.
        device: torch device for the products.
        dtype: torch dtype for the products.
    """
    _check_ranks_fpirs(ranks, fpirs)
    if tpir_convention not in ("nonmated-max", "opensphere-pairs"):
        raise ValueError(
            f"unknown TPIR convention {tpir_convention!r}; valid: nonmated-max, opensphere-pairs"
        )
    g = _as_tensor_rows(gallery_feats, "gallery_feats", device, dtype)
    if g.shape[0] == 0:
        raise ValueError("the gallery is empty")
    gid_np = _id_array(gallery_ids, g.shape[0], "gallery_ids")
    probes = np.asarray(probe_feats)
    if probes.ndim != 2 or probes.shape[1] != g.shape[1]:
        raise ValueError(
            f"probe_feats must be (Q, {g.shape[1]}) like the gallery, got {probes.shape}"
        )
    pid_np = _id_array(probe_ids, probes.shape[0], "probe_ids")
    gid = torch.from_numpy(gid_np).to(device)
    pid = torch.from_numpy(pid_np).to(device)
    num_probes = probes.shape[0]
    k_max = max(exact_ceil(f, num_probes) for f in fpirs) if fpirs else 0
    mated_rank, mated_best, nonmated_max, pos_scores = [], [], [], []
    neg_top = torch.empty(0, dtype=dtype, device=device)
    num_neg = 0
    for lo in range(0, num_probes, chunk_size):
        p = _as_tensor_rows(probes[lo : lo + chunk_size], "probe_feats", device, dtype, lo)
        s = p @ g.T
        mask = pid[lo : lo + chunk_size, None] == gid[None, :]
        mated = mask.any(1)
        best = s.masked_fill(~mask, -math.inf).max(1).values
        rank = 1 + ((s >= best[:, None]) & ~mask).sum(1)
        mated_rank.append(rank[mated].cpu())
        mated_best.append(best[mated].cpu())
        nonmated_max.append(s[~mated].max(1).values.cpu())
        if tpir_convention == "opensphere-pairs":
            pos_scores.append(s[mask].cpu())
            neg = s[~mask]
            num_neg += neg.shape[0]
            neg_top = torch.cat([neg_top, neg.topk(min(k_max, neg.shape[0])).values])
            neg_top = neg_top.topk(min(k_max, neg_top.shape[0])).values
    ranks_t = torch.cat(mated_rank).numpy()
    best_t = torch.cat(mated_best).double().numpy()
    nm_max = torch.cat(nonmated_max).double().numpy()
    if ranks_t.shape[0] == 0:
        raise ValueError("no mated probes: no probe subject appears in the gallery")
    hits = tuple(int(np.sum(ranks_t <= k)) for k in ranks)
    if tpir_convention == "nonmated-max":
        tpir = _tpir_nonmated_max(ranks_t, best_t, nm_max, fpirs)
    else:
        if num_neg < k_max:
            raise ValueError(
                f"only {num_neg} non-mated pairs: cannot reach FPIR {max(fpirs)} x {num_probes} "
                "probes"
            )
        pos = torch.cat(pos_scores).double().numpy()
        tpir = _tpir_opensphere(pos, neg_top.double().cpu().numpy(), num_probes, fpirs)
    return IJB1NResult(
        ranks=tuple(int(k) for k in ranks),
        rates=tuple(h / ranks_t.shape[0] for h in hits),
        hits=hits,
        num_mated=int(ranks_t.shape[0]),
        num_nonmated=int(nm_max.shape[0]),
        tpir=tpir,
    )


def _tpir_nonmated_max(
    ranks: np.ndarray, best: np.ndarray, nonmated_max: np.ndarray, fpirs: Sequence[float]
) -> tuple[TpirAtFpir, ...]:
    out = []
    desc = np.sort(nonmated_max)[::-1]
    for f in fpirs:
        if desc.shape[0] == 0:
            out.append(TpirAtFpir(f, math.nan, math.nan, math.nan, "nonmated-max"))
            continue
        thr = float(desc[exact_ceil(f, desc.shape[0]) - 1])
        tpir = float(np.sum((ranks == 1) & (best > thr))) / ranks.shape[0]
        achieved = float(np.sum(desc > thr)) / desc.shape[0]
        out.append(TpirAtFpir(f, tpir, thr, achieved, "nonmated-max"))
    return tuple(out)


def _tpir_opensphere(
    pos: np.ndarray, neg_top: np.ndarray, num_probes: int, fpirs: Sequence[float]
) -> tuple[TpirAtFpir, ...]:
    out = []
    desc = np.sort(neg_top)[::-1]
    for f in fpirs:
        thr = float(desc[exact_ceil(f, num_probes) - 1])
        tpir = float(np.sum(pos > thr)) / num_probes
        achieved = float(np.sum(desc > thr)) / num_probes
        out.append(TpirAtFpir(f, tpir, thr, achieved, "opensphere-pairs"))
    return tuple(out)


def ijb_1n_over_galleries(
    galleries: Sequence[tuple[object, object]],
    probe_feats: object,
    probe_ids: object,
    ranks: Sequence[int] = IJB_RANKS,
    fpirs: Sequence[float] = IJB_FPIRS,
    chunk_size: int = 4096,
    device: Device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> IJB1NResult:
    """The mixed probe set against each gallery (S1 and S2, or G1 and G2) in turn, combined as
    InsightFace's ``run_model_test_1N`` does: top-k = all hits over all mated probes, TPIR
    (``nonmated-max``) = mean over galleries.

    Args:
        galleries: ``(features, subject_ids)`` per gallery.
    """
    if not galleries:
        raise ValueError("ijb_1n_over_galleries needs at least one gallery")
    parts = tuple(
        ijb_1n(
            gf, gi, probe_feats, probe_ids, ranks, fpirs, "nonmated-max", chunk_size, device, dtype
        )
        for gf, gi in galleries
    )
    mated = sum(p.num_mated for p in parts)
    hits = tuple(sum(p.hits[i] for p in parts) for i in range(len(ranks)))
    tpir = tuple(
        TpirAtFpir(
            f,
            float(np.mean([p.tpir[i].tpir for p in parts])),
            math.nan,
            float(np.mean([p.tpir[i].fpir_achieved for p in parts])),
            "nonmated-max",
        )
        for i, f in enumerate(fpirs)
    )
    return IJB1NResult(
        ranks=tuple(int(k) for k in ranks),
        rates=tuple(h / mated for h in hits),
        hits=hits,
        num_mated=mated,
        num_nonmated=sum(p.num_nonmated for p in parts),
        tpir=tpir,
        protocol=f"IJB 1:N identification (cosine, mean over {len(parts)} galleries)",
        parts=parts,
    )


def merge_galleries(
    galleries: Sequence[tuple[object, object, object]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge galleries (S1 + S2, G1 + G2) into one, dropping repeated templates.

    Args:
        galleries: ``(features, subject_ids, template_ids)`` per gallery.

    Returns:
        ``(features, subject_ids, template_ids)`` with each template once, first occurrence kept.

    Raises:
        ValueError: a template listed twice under different subjects or with different features.
    """
    if not galleries:
        raise ValueError("merge_galleries needs at least one gallery")
    feats, subjects, templates = [], [], []
    for k, (f, s, t) in enumerate(galleries):
        f = np.asarray(f)
        if f.ndim != 2:
            raise ValueError(f"gallery {k}: features must be (G, d), got shape {f.shape}")
        feats.append(f)
        subjects.append(_id_array(s, f.shape[0], f"gallery {k} subject_ids"))
        templates.append(_id_array(t, f.shape[0], f"gallery {k} template_ids"))
    if len({f.shape[1] for f in feats}) != 1:
        raise ValueError(f"galleries differ in feature size: {[f.shape[1] for f in feats]}")
    f_all = np.concatenate(feats)
    s_all = np.concatenate(subjects)
    t_all = np.concatenate(templates)
    _, first, inverse = np.unique(t_all, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    clash = s_all != s_all[first[inverse]]
    if clash.any():
        i = int(np.flatnonzero(clash)[0])
        raise ValueError(
            f"template {t_all[i]} is listed under subjects {s_all[first[inverse[i]]]} "
            f"and {s_all[i]}"
        )
    differ = np.any(f_all != f_all[first[inverse]], axis=1)
    if differ.any():
        i = int(np.flatnonzero(differ)[0])
        raise ValueError(f"template {t_all[i]} appears twice with different features")
    keep = np.sort(first)
    return f_all[keep], s_all[keep], t_all[keep]
