"""IJB-B / IJB-C end to end: loose crops -> aligned faces -> embeddings -> template
verification (1:1) and, optionally, identification (1:N).

The metrics live in :mod:`sphereface2.metrics.ijb` (arrays only); this module finds the files,
aligns and embeds the images, and calls them. Protocol (InsightFace ``eval_ijbc.py``, OpenSphere):

1. every loose crop is aligned from its 5 landmarks onto the ArcFace template
   (:func:`sphereface2.data.alignment.align_face`, a least-squares similarity transform);
2. image feature = raw embedding of the crop + raw embedding of its mirror (flip test);
3. times the detector's faceness score; features sharing a media id inside a template are
   averaged, the media features summed and the sum L2-normalised
   (:func:`~sphereface2.metrics.ijb.template_features`);
4. 1:1: cosine of the two templates of each pair, scored in chunks; TAR at FAR read at the
   nearest ROC point (InsightFace) and by linear interpolation (OpenSphere), each labelled;
5. 1:N (optional): the mixed probe templates against the galleries S1/S2 (IJB-B) or G1/G2
   (IJB-C), either each gallery searched on its own with TPIR from the non-mated probes'
   maximum scores, averaged over the two galleries (``"insightface"``), or one merged
   gallery with OpenSphere's pair-based TPIR (``"opensphere"``).

The files on disk (the ``IJB_release`` layout, :func:`locate_ijb`, :class:`IJBDataset`) are
:mod:`sphereface2.data.ijb_dataset`, re-exported here; this module keeps the image feature
cache and the evaluation run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from sphereface2.data.ijb_dataset import (  # noqa: F401  (re-exported: the old import path)
    IJB_DISPLAY_NAMES,
    IJB_GALLERIES,
    IJBDataset,
    IJBLayout,
    line_of_record,
    locate_ijb,
    normalize_ijb_name,
)
from sphereface2.data.ijb_meta import IJBFormatError, read_1n_list, read_template_pair_label
from sphereface2.evaluate.report import IdentificationRow
from sphereface2.metrics.ijb import (
    IJB_FARS,
    IJB1NResult,
    IJBVerificationResult,
    ijb_1n,
    ijb_1n_over_galleries,
    merge_galleries,
    score_template_pairs,
    take_templates,
    template_features,
)
from sphereface2.metrics.roc import READ_METHODS, roc_auc, roc_curve, tpr_at_fpr
from sphereface2.models.embed import Progress, embed_dataset
from sphereface2.models.loading import EmbeddingModel

#: 1:N conventions (see the module docstring).
OneToN = Literal["insightface", "opensphere"]
ONE_TO_N_CONVENTIONS: tuple[str, ...] = ("insightface", "opensphere")

CACHE_FORMAT = "sphereface2-ijb-image-features"
CACHE_VERSION = 1


# ----------------------------------------------------------------------------- features


def _fingerprint(model: EmbeddingModel, dataset: IJBDataset, flip: bool) -> dict[str, object]:
    digest = hashlib.sha1()
    digest.update("\n".join(dataset.image_names).encode())
    digest.update(np.ascontiguousarray(dataset.landmarks, dtype=np.float32).tobytes())
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "set": dataset.name,
        "num_images": len(dataset),
        "images_and_landmarks_sha1": digest.hexdigest(),
        "model": model.description,
        "embedding_dim": int(model.embedding_dim),
        "flip": bool(flip),
        "align_size": list(dataset.align_size),
        "input_size": list(dataset.input_size),
    }


def cache_paths(cache: str | os.PathLike) -> tuple[Path, Path]:
    """``(features .npy, its .json description)`` for a cache path (``.npy`` added if absent)."""
    path = Path(cache)
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")
    return path, path.with_suffix(".json")


def _read_cache(npy: Path, info: Path, expected: dict[str, object]) -> np.ndarray:
    if not info.is_file():
        raise ValueError(
            f"{npy}: feature cache without its description {info.name}; delete it or choose "
            "another cache path"
        )
    try:
        stored = json.loads(info.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{info}: not a feature cache description ({err})") from None
    for key, value in expected.items():
        if stored.get(key) != value:
            raise ValueError(
                f"{npy}: cached features were computed for another run ({key}: cached "
                f"{stored.get(key)!r}, now {value!r}); delete it or choose another cache path"
            )
    features = np.load(npy, mmap_mode=None, allow_pickle=False)
    n, d = expected["num_images"], expected["embedding_dim"]
    if features.shape != (n, d) or features.dtype != np.float32:
        raise ValueError(
            f"{npy}: holds a {features.dtype} array of shape {features.shape}, expected "
            f"float32 ({n}, {d}); delete it or choose another cache path"
        )
    return features


def _write_cache(npy: Path, info: Path, features: np.ndarray, desc: dict[str, object]) -> None:
    npy.parent.mkdir(parents=True, exist_ok=True)
    tmp = npy.with_name(npy.name + ".tmp.npy")
    np.save(tmp, features, allow_pickle=False)
    os.replace(tmp, npy)
    info.write_text(json.dumps(desc, indent=2) + "\n", encoding="utf-8")


def ijb_image_features(
    model: EmbeddingModel,
    dataset: IJBDataset,
    batch_size: int = 64,
    flip: bool = True,
    num_workers: int = 0,
    progress: Progress | None = None,
    cache: str | os.PathLike | None = None,
) -> tuple[np.ndarray, bool]:
    """Raw per-image features (flip sums, before faceness), optionally cached.

    With ``cache``, features are read from ``<cache>.npy`` when its ``.json`` description
    matches this model, set, landmarks and settings (a mismatch is an error, never a silent
    re-use), else computed and written there.

    Returns:
        ``((N, d) float32 features, whether they came from the cache)``.
    """
    desc = _fingerprint(model, dataset, flip)
    if cache is not None:
        npy, info = cache_paths(cache)
        if npy.is_file():
            return _read_cache(npy, info, desc), True
    features = embed_dataset(model, dataset, batch_size, flip, num_workers, progress)
    if cache is not None:
        _write_cache(npy, info, features, desc)
    return features, False


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class IJBEvaluation:
    """An IJB set evaluated end to end.

    Attributes:
        name: ``IJB-B`` or ``IJB-C``.
        verification: 1:1 TAR@FAR (both read methods) and AUC.
        identification: 1:N result, if asked for.
        one_to_n: the 1:N convention used (``insightface`` / ``opensphere``), or None.
        num_images, num_templates: what was pooled.
        flip, use_faceness: the settings used.
        from_cache: image features came from the cache.
        embed_seconds, metric_seconds: time spent embedding and scoring.
        source: the set's folder.
        scores, labels: (P,) cosine score and genuine flag of every pair, in file order.
        template_feats, template_ids: (T, d) pooled template features, sorted by id.
        image_features: (N, d) raw flip-sum image features (before faceness).
    """

    name: str
    verification: IJBVerificationResult
    identification: IJB1NResult | None
    one_to_n: str | None
    num_images: int
    num_templates: int
    flip: bool
    use_faceness: bool
    from_cache: bool
    embed_seconds: float
    metric_seconds: float
    source: str
    scores: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    template_feats: np.ndarray = field(repr=False)
    template_ids: np.ndarray = field(repr=False)
    image_features: np.ndarray = field(repr=False)

    def report_entries(self) -> tuple[dict[str, IJBVerificationResult], list[IdentificationRow]]:
        """``({name: 1:1 result}, 1:N rows)`` for
        :func:`sphereface2.evaluate.report.build_report` (its ``ijb`` and ``identification``
        arguments): the 1:N row has the top-k rates and TPIR at each FPIR, the TPIR convention
        in the column name."""
        rows = []
        result = self.identification
        if result is not None:
            rates: dict[str, float] = {f"top-{k}": r for k, r in zip(result.ranks, result.rates)}
            for t in result.tpir:
                label = f"{t.fpir:.0e}".replace("e-0", "e-")
                rates[f"TPIR@FPIR={label} [{t.convention}]"] = t.tpir
            rows.append(
                IdentificationRow(
                    name=f"{self.name} 1:N",
                    rates=rates,
                    protocol=result.protocol.removeprefix(f"{self.name} 1:N, "),
                    detail=f"{result.num_mated} mated / {result.num_nonmated} non-mated "
                    "probe searches",
                )
            )
        return {self.name: self.verification}, rows

    def __str__(self) -> str:
        lines = [
            f"{self.name}: {self.num_images} images, {self.num_templates} templates "
            f"({self.source})",
            str(self.verification),
        ]
        if self.identification is not None:
            lines.append(str(self.identification))
        return "\n".join(lines)


def _verification_protocol(flip: bool, use_faceness: bool) -> str:
    image = "flip-sum" if flip else "single"
    weight = " x faceness" if use_faceness else ""
    return (
        f"1:1 template verification ({image} embeddings{weight}, media-averaged, "
        "template-summed, cosine)"
    )


def _check_pair_templates(layout: IJBLayout, known: np.ndarray, t1: np.ndarray, t2: np.ndarray):
    """Fail before embedding when a pair names a template without images."""
    for column, ids in (("first", t1), ("second", t2)):
        bad = ~np.isin(ids, known)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise IJBFormatError(
                f"{layout.pairs_file}:{line_of_record(layout.pairs_file, i)}: {column} template "
                f"{int(ids[i])} has no images in {layout.tid_mid_file}"
            )


@dataclass(frozen=True)
class _OneToNLists:
    galleries: list[tuple[np.ndarray, np.ndarray]]
    probes: tuple[np.ndarray, np.ndarray]


def _read_1n_lists(layout: IJBLayout, known: np.ndarray) -> _OneToNLists:
    missing = layout.missing_1n_files()
    if missing:
        raise FileNotFoundError(
            f"{layout.display_name} 1:N needs " + ", ".join(str(p) for p in missing)
        )
    lists = [read_1n_list(p) for p in (*layout.gallery_files, layout.probe_file)]
    for path, (templates, _) in zip((*layout.gallery_files, layout.probe_file), lists):
        bad = ~np.isin(templates, known)
        if bad.any():
            raise IJBFormatError(
                f"{path}: template {int(templates[np.flatnonzero(bad)[0]])} has no images in "
                f"{layout.tid_mid_file}"
            )
    return _OneToNLists(galleries=lists[:-1], probes=lists[-1])


def _one_to_n(
    layout: IJBLayout,
    lists: _OneToNLists,
    feats: np.ndarray,
    ids: np.ndarray,
    convention: str,
    device: str | torch.device,
) -> IJB1NResult:
    probe_t, probe_s = lists.probes
    probes = take_templates(feats, ids, probe_t)
    gallery_names = " and ".join(IJB_GALLERIES[layout.name])
    if convention == "insightface":
        galleries = [(take_templates(feats, ids, t), s) for t, s in lists.galleries]
        result = ijb_1n_over_galleries(galleries, probes, probe_s, device=device)
        protocol = (
            f"{layout.display_name} 1:N, mixed probes vs galleries {gallery_names} searched "
            "separately; TPIR from non-mated probes' max score, mean of the galleries "
            "(InsightFace)"
        )
    else:
        merged_f, merged_s, _ = merge_galleries(
            [(take_templates(feats, ids, t), s, t) for t, s in lists.galleries]
        )
        result = ijb_1n(
            merged_f, merged_s, probes, probe_s, tpir_convention="opensphere-pairs", device=device
        )
        protocol = (
            f"{layout.display_name} 1:N, mixed probes vs merged gallery {gallery_names}; TPIR "
            "from non-mated probe-gallery pairs (OpenSphere)"
        )
    return dataclasses.replace(result, protocol=protocol)


def evaluate_ijb(
    model: EmbeddingModel,
    ijb_dir: str | os.PathLike,
    name: str | None = "IJBC",
    batch_size: int = 64,
    flip: bool = True,
    use_faceness: bool = True,
    num_workers: int = 0,
    chunk_size: int = 16384,
    progress: Progress | None = None,
    image_dir: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    one_to_n: OneToN | None = None,
    fars: Sequence[float] = IJB_FARS,
    device: str | torch.device = "cpu",
    align_size: Sequence[int] | None = None,
) -> IJBEvaluation:
    """Evaluate ``model`` on IJB-B or IJB-C from the loose crops (see the module docstring).

    All meta files are read and cross-checked before any image is embedded, so a malformed
    line or a missing image fails in seconds, naming the file and line.

    Args:
        model: the model (its ``input_size`` sets the tensor size).
        ijb_dir: see :func:`locate_ijb`.
        name: ``IJBB`` or ``IJBC`` (None: the one set found in ``ijb_dir``).
        batch_size: images per forward pass.
        flip: add the embedding of the mirrored crop (the protocol's flip test).
        use_faceness: weight image features by the detector's faceness score.
        num_workers: DataLoader workers reading and aligning images.
        chunk_size: template pairs scored at a time.
        progress: ``progress(done, total)`` after each batch.
        image_dir: the loose crops (default ``<set>/loose_crop``).
        cache: ``.npy`` path caching the raw image features (see :func:`ijb_image_features`).
        one_to_n: also run 1:N with this convention (``insightface`` or ``opensphere``).
        fars: FARs at which TAR is read.
        device: torch device for pair scoring and 1:N products.
        align_size: (H, W) of the aligned crop before resizing to the model's input size
            (default: the model's input size).
    """
    if one_to_n is not None and one_to_n not in ONE_TO_N_CONVENTIONS:
        raise ValueError(f"unknown 1:N convention {one_to_n!r}; valid: insightface, opensphere")
    dataset = IJBDataset(ijb_dir, name, image_dir, model.input_size, align_size)
    layout = dataset.layout
    known = np.unique(dataset.template_ids)
    t1, t2, labels = read_template_pair_label(layout.pairs_file)
    _check_pair_templates(layout, known, t1, t2)
    lists = _read_1n_lists(layout, known) if one_to_n is not None else None

    start = time.perf_counter()
    features, from_cache = ijb_image_features(
        model, dataset, batch_size, flip, num_workers, progress, cache
    )
    embed_seconds = time.perf_counter() - start

    start = time.perf_counter()
    feats, ids = template_features(
        features, dataset.faceness, dataset.template_ids, dataset.media_ids, use_faceness
    )
    scores = score_template_pairs(feats, ids, t1, t2, chunk_size, device)
    roc = roc_curve(scores, labels)
    verification = IJBVerificationResult(
        tar_at_far=tpr_at_fpr(roc, fars, READ_METHODS),
        auc=roc_auc(roc),
        num_genuine=roc.num_genuine,
        num_impostor=roc.num_impostor,
        protocol=_verification_protocol(flip, use_faceness),
    )
    identification = (
        _one_to_n(layout, lists, feats, ids, one_to_n, device) if lists is not None else None
    )
    metric_seconds = time.perf_counter() - start
    return IJBEvaluation(
        name=layout.display_name,
        verification=verification,
        identification=identification,
        one_to_n=one_to_n,
        num_images=len(dataset),
        num_templates=int(ids.shape[0]),
        flip=flip,
        use_faceness=use_faceness,
        from_cache=from_cache,
        embed_seconds=embed_seconds,
        metric_seconds=metric_seconds,
        source=str(layout.set_dir),
        scores=scores,
        labels=labels,
        template_feats=feats,
        template_ids=ids,
        image_features=features,
    )
