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

Layout (InsightFace's ``IJB_release`` folder)::

    IJB_release/IJBC/meta/ijbc_face_tid_mid.txt, ijbc_name_5pts_score.txt,
                          ijbc_template_pair_label.txt,
                          ijbc_1N_gallery_G1.csv, ijbc_1N_gallery_G2.csv, ijbc_1N_probe_mixed.csv
    IJB_release/IJBC/loose_crop/1.jpg ...

(``ijbb_`` and S1/S2 for IJB-B). ``ijb_dir`` may be ``IJB_release``, its ``IJBC`` folder, or a
folder holding ``IJB_release``.
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
from torch.utils.data import Dataset

from sphereface2.data.alignment import align_face
from sphereface2.data.decode import ImageDecodeError, read_image
from sphereface2.data.ijb_meta import (
    IJBFormatError,
    IJBMeta,
    read_1n_list,
    read_ijb_meta,
    read_template_pair_label,
)
from sphereface2.data.transforms import eval_transform
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

#: Sets and their 1:N galleries.
IJB_GALLERIES = {"IJBB": ("S1", "S2"), "IJBC": ("G1", "G2")}
#: Table names.
IJB_DISPLAY_NAMES = {"IJBB": "IJB-B", "IJBC": "IJB-C"}
#: 1:N conventions (see the module docstring).
OneToN = Literal["insightface", "opensphere"]
ONE_TO_N_CONVENTIONS: tuple[str, ...] = ("insightface", "opensphere")

CACHE_FORMAT = "sphereface2-ijb-image-features"
CACHE_VERSION = 1


# ----------------------------------------------------------------------------- layout


def normalize_ijb_name(name: str) -> str:
    """``IJBB`` or ``IJBC`` from any spelling (``ijbc``, ``IJB-C``, ``ijb_c``)."""
    key = name.upper().replace("-", "").replace("_", "")
    if key not in IJB_GALLERIES:
        raise ValueError(f"unknown IJB set {name!r}; valid: IJBB, IJBC")
    return key


@dataclass(frozen=True)
class IJBLayout:
    """Where one IJB set's files are.

    Attributes:
        name: ``IJBB`` or ``IJBC``.
        set_dir: the set's folder (holding ``meta``).
        meta_dir: the meta files' folder.
        image_dir: the loose crops' folder.
    """

    name: str
    set_dir: Path
    meta_dir: Path
    image_dir: Path

    @property
    def display_name(self) -> str:
        return IJB_DISPLAY_NAMES[self.name]

    def meta_file(self, kind: str) -> Path:
        """``<meta>/<ijbb|ijbc>_<kind>``, e.g. ``kind="face_tid_mid.txt"``."""
        return self.meta_dir / f"{self.name.lower()}_{kind}"

    @property
    def tid_mid_file(self) -> Path:
        return self.meta_file("face_tid_mid.txt")

    @property
    def landmarks_file(self) -> Path:
        return self.meta_file("name_5pts_score.txt")

    @property
    def pairs_file(self) -> Path:
        return self.meta_file("template_pair_label.txt")

    @property
    def gallery_files(self) -> tuple[Path, ...]:
        return tuple(self.meta_file(f"1N_gallery_{g}.csv") for g in IJB_GALLERIES[self.name])

    @property
    def probe_file(self) -> Path:
        return self.meta_file("1N_probe_mixed.csv")

    def missing_1n_files(self) -> list[Path]:
        return [p for p in (*self.gallery_files, self.probe_file) if not p.is_file()]


def locate_ijb(
    ijb_dir: str | os.PathLike,
    name: str | None = None,
    image_dir: str | os.PathLike | None = None,
) -> IJBLayout:
    """Find an IJB set's meta and image folders.

    Args:
        ijb_dir: the set's folder (holding ``meta``), ``IJB_release``, or its parent.
        name: ``IJBB`` or ``IJBC`` (any spelling); None: the one set found there.
        image_dir: the loose crops (default: ``<set>/loose_crop``).

    Raises:
        FileNotFoundError: no such folder or no meta files (the message lists where it looked).
        ValueError: ``name`` is None and both sets are there.
    """
    root = Path(ijb_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"IJB folder not found: {root}")
    names = [normalize_ijb_name(name)] if name else list(IJB_GALLERIES)
    found: list[tuple[str, Path]] = []
    looked: list[Path] = []
    for n in names:
        for set_dir in (root, root / n, root / "IJB_release" / n):
            meta = set_dir / "meta" / f"{n.lower()}_face_tid_mid.txt"
            looked.append(meta)
            if meta.is_file():
                found.append((n, set_dir))
                break
    if not found:
        raise FileNotFoundError(
            f"{root}: no IJB meta files; looked for " + ", ".join(str(p) for p in looked)
        )
    if len(found) > 1:
        raise ValueError(
            f"{root}: holds both IJBB and IJBC; say which one to evaluate (name / --ijb-name)"
        )
    n, set_dir = found[0]
    images = Path(image_dir) if image_dir is not None else set_dir / "loose_crop"
    if not images.is_dir():
        raise FileNotFoundError(f"IJB image folder not found: {images} (for {set_dir})")
    return IJBLayout(n, set_dir, set_dir / "meta", images)


def line_of_record(path: str | os.PathLike, index: int) -> int:
    """The 1-based line number of the ``index``-th (0-based) non-blank line of a text file
    (the meta readers skip blank lines, so record numbers and line numbers can differ)."""
    seen = -1
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                seen += 1
                if seen == index:
                    return lineno
    raise IndexError(f"{path} has no record {index + 1}")


# ----------------------------------------------------------------------------- dataset


class IJBDataset(Dataset):
    """The images of an IJB set, aligned: yields ``(image tensor (3, H, W), index)``.

    Each loose crop is aligned from its 5 landmarks to ``align_size`` (default: the model's
    ``input_size``; 112x112 is the ArcFace crop) and resized to ``input_size`` if they differ,
    then normalised as in training (``(x - 127.5) / 127.5``).

    Args:
        ijb_dir: see :func:`locate_ijb`.
        name: ``IJBB`` or ``IJBC`` (None: the one found).
        image_dir: the loose crops (default ``<set>/loose_crop``).
        input_size: (H, W) of the tensors.
        align_size: (H, W) of the aligned crop (default ``input_size``).
        check_images: check up front that every listed image exists.

    Raises:
        IJBFormatError: a malformed meta file (naming the file and line).
        FileNotFoundError: a listed image is missing (naming it and its meta line).
    """

    def __init__(
        self,
        ijb_dir: str | os.PathLike,
        name: str | None = "IJBC",
        image_dir: str | os.PathLike | None = None,
        input_size: Sequence[int] = (112, 112),
        align_size: Sequence[int] | None = None,
        check_images: bool = True,
    ) -> None:
        self.layout = locate_ijb(ijb_dir, name, image_dir)
        self.meta: IJBMeta = read_ijb_meta(self.layout.meta_dir, self.layout.name, pairs=False)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        size = align_size if align_size is not None else self.input_size
        self.align_size = (int(size[0]), int(size[1]))
        self.transform = eval_transform(self.input_size)
        if check_images:
            self._check_images()

    @property
    def name(self) -> str:
        return self.layout.name

    @property
    def image_names(self) -> list[str]:
        return self.meta.image_names

    @property
    def template_ids(self) -> np.ndarray:
        return self.meta.template_ids

    @property
    def media_ids(self) -> np.ndarray:
        return self.meta.media_ids

    @property
    def faceness(self) -> np.ndarray:
        return self.meta.faceness

    @property
    def landmarks(self) -> np.ndarray:
        return self.meta.landmarks

    def image_path(self, index: int) -> Path:
        return self.layout.image_dir / self.meta.image_names[index]

    def _where(self, index: int) -> str:
        path = self.layout.landmarks_file
        return f"{path}:{line_of_record(path, index)}"

    def _check_images(self) -> None:
        # One directory listing instead of one stat per image (IJB-C has 469,375 images).
        listed = set(os.listdir(self.layout.image_dir))
        missing = [
            i
            for i, n in enumerate(self.meta.image_names)
            if not (n in listed or ("/" in n and (self.layout.image_dir / n).is_file()))
        ]
        if missing:
            first = missing[0]
            raise FileNotFoundError(
                f"{self.image_path(first)}: image not found (listed at {self._where(first)}); "
                f"{len(missing)} of {len(self)} listed images are missing"
            )

    def __len__(self) -> int:
        return len(self.meta.image_names)

    def crop(self, index: int) -> np.ndarray:
        """The aligned RGB uint8 crop of image ``index`` (``align_size``)."""
        path = self.image_path(index)
        try:
            rgb = read_image(str(path))
            return align_face(rgb, self.meta.landmarks[index], self.align_size)
        except (ImageDecodeError, ValueError) as err:
            raise ValueError(f"{path} (listed at {self._where(index)}): {err}") from None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} IJB images")
        return self.transform(self.crop(index)), index

    def __repr__(self) -> str:
        return (
            f"IJBDataset({self.layout.display_name}, images={len(self)}, "
            f"templates={np.unique(self.meta.template_ids).shape[0]}, "
            f"dir={str(self.layout.set_dir)!r})"
        )


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
