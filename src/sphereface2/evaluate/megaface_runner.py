"""MegaFace challenge 1 end to end: FaceScrub-style probes against growing distractor sets.

The metrics live in :mod:`sphereface2.metrics.megaface` (arrays only) and the readers of the
folders, list files and feature trees in :mod:`sphereface2.data.megaface_layout` (re-exported
here); this module opens the images (or precomputed devkit feature files), embeds them and
calls the metrics for each distractor count.

- Probes: an identity folder (``root/<identity>/<image>``, FaceScrub's layout), a list file
  (``path label`` or ``path`` lines, see :func:`sphereface2.data.list_file.read_list_file`),
  or a devkit feature tree (``root/<identity>/<image>_<suffix>.bin``).
- Distractors: a folder of images (searched recursively, sorted by path), a list file (one
  image path per line, the first field; relative to the list's folder), or a devkit feature
  tree. The evaluation with ``n`` distractors uses the FIRST ``n`` in that order, so give a
  list file to reproduce a particular subset.
- Images must already be aligned face crops (``sphereface2 data align``); they are resized to
  the model's input size if needed and embedded with the flip test (raw embedding of the
  image plus that of its mirror). Feature files are used as they are.
- For each distractor count: rank-1 (and any other rank) identification, each probe image in
  turn the gallery entry of its identity, and verification TAR at FAR 1e-6 (probe-probe
  genuine pairs against probe x distractor impostor pairs), read at the nearest ROC point
  (InsightFace) and by interpolation (OpenSphere). Cosine scores throughout.

Not done here: the devkit's removal of FaceScrub/MegaFace label noise (InsightFace's
``remove_noises.py``): pass cleaned lists or feature trees.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from sphereface2.data.image_folder import ImageFolderDataset
from sphereface2.data.list_file import ListFileDataset, SampleListDataset
from sphereface2.data.megaface_features import feature_path, read_features, write_feature
from sphereface2.data.megaface_layout import (  # noqa: F401  (re-exported: the old import path)
    count_distractors,
    find_feature_files,
    identity_labels,
    read_image_list,
    scan_images,
)
from sphereface2.data.transforms import eval_transform
from sphereface2.evaluate.report import IdentificationRow
from sphereface2.metrics.megaface import (
    MEGAFACE_FARS,
    MegaFaceIdentificationResult,
    MegaFaceVerificationResult,
    megaface_evaluate,
)
from sphereface2.metrics.roc import READ_METHODS
from sphereface2.metrics.verification import l2_normalize
from sphereface2.models.embed import Progress, embed_dataset
from sphereface2.models.loading import EmbeddingModel

#: The distractor counts of the MegaFace challenge.
MEGAFACE_SIZES = (10, 100, 1_000, 10_000, 100_000, 1_000_000)

SetKind = Literal["images", "features"]


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class FaceSet:
    """Features of a probe or distractor set, with where they came from.

    Attributes:
        features: (N, d) float32 (raw flip sums for images, stored values for feature files).
        paths: the image or feature file of each row.
        source: the folder or list file.
        kind: ``images`` or ``features``.
        labels: (N,) identity index per row (probes), or None.
        identities: identity names, indexed by label (probes), or None.
    """

    features: np.ndarray = field(repr=False)
    paths: list[Path] = field(repr=False)
    source: str
    kind: SetKind
    labels: np.ndarray | None = field(default=None, repr=False)
    identities: list[str] | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])


def _require_model(model: EmbeddingModel | None, source: str) -> EmbeddingModel:
    if model is None:
        raise ValueError(f"{source}: holds images; a model is needed to embed them")
    return model


@dataclass(frozen=True)
class _EmbedSettings:
    batch_size: int
    flip: bool
    num_workers: int
    progress: Progress | None


def _embed_paths(
    model: EmbeddingModel, paths: Sequence[Path], source: str, settings: _EmbedSettings
) -> np.ndarray:
    dataset = SampleListDataset(
        [(str(p), 0) for p in paths], eval_transform(model.input_size), source=source
    )
    return _embed(model, dataset, settings)


def _embed(model: EmbeddingModel, dataset, settings: _EmbedSettings) -> np.ndarray:
    return embed_dataset(
        model,
        dataset,
        settings.batch_size,
        settings.flip,
        settings.num_workers,
        settings.progress,
    )


def open_probes(
    probes: str | os.PathLike,
    model: EmbeddingModel | None,
    feature_suffix: str | None = None,
    batch_size: int = 64,
    flip: bool = True,
    num_workers: int = 0,
    progress: Progress | None = None,
) -> FaceSet:
    """Embed (or read) the probe set: an identity folder of images, a list file, or a devkit
    feature tree (see the module docstring)."""
    path = Path(probes)
    settings = _EmbedSettings(batch_size, flip, num_workers, progress)
    if path.is_file():
        model = _require_model(model, str(path))
        dataset = ListFileDataset(path, transform=eval_transform(model.input_size))
        feats = _embed(model, dataset, settings)
        return FaceSet(feats, [Path(p) for p in dataset.paths], str(path), "images", dataset.labels)
    if not path.is_dir():
        raise FileNotFoundError(f"MegaFace probes not found: {path}")
    if scan_images(path):
        model = _require_model(model, str(path))
        dataset = ImageFolderDataset(path, transform=eval_transform(model.input_size))
        feats = _embed(model, dataset, settings)
        return FaceSet(
            feats,
            [Path(p) for p in dataset.paths],
            str(path),
            "images",
            dataset.labels,
            dataset.class_names,
        )
    files, _ = find_feature_files(path, feature_suffix)
    labels, identities = identity_labels(path, files)
    return FaceSet(read_features(files), files, str(path), "features", labels, identities)


def open_distractors(
    distractors: str | os.PathLike,
    model: EmbeddingModel | None,
    limit: int | None = None,
    feature_suffix: str | None = None,
    batch_size: int = 64,
    flip: bool = True,
    num_workers: int = 0,
    progress: Progress | None = None,
) -> FaceSet:
    """Embed (or read) the first ``limit`` distractors (all when None): a folder of images, a
    list file, or a devkit feature tree (see the module docstring)."""
    path = Path(distractors)
    settings = _EmbedSettings(batch_size, flip, num_workers, progress)
    if path.is_file():
        images = read_image_list(path)
    elif path.is_dir():
        images = scan_images(path)
    else:
        raise FileNotFoundError(f"MegaFace distractors not found: {path}")
    if images:
        chosen = images[:limit] if limit is not None else images
        model = _require_model(model, str(path))
        return FaceSet(
            _embed_paths(model, chosen, str(path), settings), chosen, str(path), "images"
        )
    files, _ = find_feature_files(path, feature_suffix)
    chosen = files[:limit] if limit is not None else files
    return FaceSet(read_features(chosen), chosen, str(path), "features")


def resolve_distractor_counts(
    counts: Sequence[int] | None, available: int, source: str
) -> list[int]:
    """The distractor counts to evaluate, ascending.

    None: the challenge's sizes (:data:`MEGAFACE_SIZES`) up to ``available``, plus
    ``available`` itself when it is not one of them. Explicit counts must be in
    ``1..available``.
    """
    if available < 1:
        raise ValueError(f"{source}: no distractors")
    if counts is None:
        chosen = [n for n in MEGAFACE_SIZES if n <= available]
        if available not in chosen:
            chosen.append(available)
        return chosen
    if not counts:
        raise ValueError("no distractor counts given")
    for n in counts:
        if isinstance(n, bool) or int(n) != n or not 1 <= n <= available:
            raise ValueError(
                f"distractor count {n!r} is not in 1..{available} ({source} holds {available})"
            )
    return sorted({int(n) for n in counts})


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class MegaFaceSizeResult:
    """Identification and verification with one number of distractors."""

    num_distractors: int
    identification: MegaFaceIdentificationResult
    verification: MegaFaceVerificationResult


@dataclass(frozen=True)
class MegaFaceRun:
    """MegaFace results for every distractor count.

    Attributes:
        sizes: one result per distractor count, ascending.
        num_probes: probe images.
        num_identities: probe identities.
        probe_source, distractor_source: where the sets came from.
        probes_from, distractors_from: ``images`` (embedded here) or ``features`` (files).
        flip: whether images were embedded with the flip test.
        embed_seconds: time to embed or read the sets.
        metric_seconds: time for the metrics.
    """

    sizes: tuple[MegaFaceSizeResult, ...]
    num_probes: int
    num_identities: int
    probe_source: str
    distractor_source: str
    probes_from: SetKind
    distractors_from: SetKind
    flip: bool
    embed_seconds: float
    metric_seconds: float

    def report_entries(
        self,
    ) -> tuple[dict[str, MegaFaceVerificationResult], list[IdentificationRow]]:
        """``({name: verification result}, identification rows)`` for
        :func:`sphereface2.evaluate.report.build_report` (its ``ijb`` and ``identification``
        arguments), one entry per distractor count."""
        verification: dict[str, MegaFaceVerificationResult] = {}
        rows: list[IdentificationRow] = []
        for s in self.sizes:
            name = f"MegaFace, {s.num_distractors:,} distractors"
            verification[name] = s.verification
            ident = s.identification
            rows.append(
                IdentificationRow(
                    name=name,
                    rates={f"rank-{k}": r for k, r in zip(ident.ranks, ident.rates)},
                    protocol=ident.protocol,
                    detail=f"{ident.num_queries} queries, {self.num_probes} probe images",
                )
            )
        return verification, rows

    def __str__(self) -> str:
        lines = [
            f"MegaFace: {self.num_probes} probe images of {self.num_identities} identities "
            f"({self.probes_from}: {self.probe_source}); distractors "
            f"({self.distractors_from}: {self.distractor_source})"
        ]
        for s in self.sizes:
            ident = ", ".join(
                f"rank-{k} {100 * r:.3f}%"
                for k, r in zip(s.identification.ranks, s.identification.rates)
            )
            reads = ", ".join(
                f"TAR@FAR={r.fpr:g} {100 * r.tpr:.3f}% ({r.method})"
                for r in s.verification.tar_at_far
            )
            lines.append(f"  {s.num_distractors} distractors: {ident}; {reads}")
        return "\n".join(lines)


def evaluate_megaface(
    model: EmbeddingModel | None,
    probes: str | os.PathLike | FaceSet,
    distractors: str | os.PathLike | FaceSet,
    distractor_counts: Sequence[int] | None = None,
    batch_size: int = 64,
    flip: bool = True,
    num_workers: int = 0,
    ranks: Sequence[int] = (1,),
    fars: Sequence[float] = MEGAFACE_FARS,
    chunk_size: int = 8192,
    device: str | torch.device = "cpu",
    feature_suffix: str | None = None,
    progress: Progress | None = None,
) -> MegaFaceRun:
    """MegaFace challenge 1 for each distractor count (see the module docstring).

    Args:
        model: embeds images; may be None when both sets are feature files.
        probes: identity folder, list file, devkit feature tree, or a :class:`FaceSet`.
        distractors: image folder, list file, devkit feature tree, or a :class:`FaceSet`.
        distractor_counts: counts to evaluate (see :func:`resolve_distractor_counts`); the
            first ``n`` distractors are used for count ``n``, and only the largest count's
            images are embedded.
        batch_size, flip, num_workers, progress: as in
            :func:`sphereface2.evaluate.runner.embed_dataset`.
        ranks: identification ranks.
        fars: verification FARs.
        chunk_size: distractors per matrix product.
        device: torch device for the products.
        feature_suffix: suffix of devkit feature files (None: the only one present).
    """
    start = time.perf_counter()
    embed_kw = dict(batch_size=batch_size, flip=flip, num_workers=num_workers, progress=progress)
    probe_set = (
        probes
        if isinstance(probes, FaceSet)
        else open_probes(probes, model, feature_suffix, **embed_kw)
    )
    if probe_set.labels is None:
        raise ValueError(f"{probe_set.source}: probes need identity labels")
    if isinstance(distractors, FaceSet):
        counts = resolve_distractor_counts(distractor_counts, len(distractors), distractors.source)
        distractor_set = distractors
    else:
        available = count_distractors(distractors, feature_suffix)
        counts = resolve_distractor_counts(distractor_counts, available, str(distractors))
        distractor_set = open_distractors(
            distractors, model, counts[-1], feature_suffix, **embed_kw
        )
    embed_seconds = time.perf_counter() - start
    if probe_set.features.shape[1] != distractor_set.features.shape[1]:
        raise ValueError(
            f"probe features are {probe_set.features.shape[1]}-d ({probe_set.source}) but "
            f"distractor features are {distractor_set.features.shape[1]}-d "
            f"({distractor_set.source})"
        )
    start = time.perf_counter()
    results = []
    for n in counts:
        identification, verification = megaface_evaluate(
            probe_set.features,
            probe_set.labels,
            distractor_set.features[:n],
            ranks=ranks,
            fars=fars,
            methods=READ_METHODS,
            chunk_size=chunk_size,
            device=device,
        )
        results.append(MegaFaceSizeResult(n, identification, verification))
    return MegaFaceRun(
        sizes=tuple(results),
        num_probes=len(probe_set),
        num_identities=int(np.unique(probe_set.labels).shape[0]),
        probe_source=probe_set.source,
        distractor_source=distractor_set.source,
        probes_from=probe_set.kind,
        distractors_from=distractor_set.kind,
        flip=flip,
        embed_seconds=embed_seconds,
        metric_seconds=time.perf_counter() - start,
    )


# ----------------------------------------------------------------------------- feature files


def _image_root(dataset: SampleListDataset, root: str | os.PathLike | None) -> Path:
    if root is not None:
        return Path(root)
    source = Path(dataset.source)
    if source.is_dir():
        return source
    if source.is_file():
        return source.parent
    raise ValueError(
        f"cannot tell the image root of {dataset.source!r}; give root= (the folder that the "
        "feature tree mirrors)"
    )


def write_megaface_features(
    model: EmbeddingModel,
    dataset: SampleListDataset | str | os.PathLike,
    out_dir: str | os.PathLike,
    suffix: str,
    root: str | os.PathLike | None = None,
    batch_size: int = 64,
    flip: bool = True,
    num_workers: int = 0,
    progress: Progress | None = None,
) -> list[Path]:
    """Embed images and write one devkit feature file per image
    (``out_dir/<relative folders>/<image file name>_<suffix>.bin``, see
    :mod:`sphereface2.data.megaface_features`), as InsightFace's ``gen_megaface.py`` does: the
    flip-sum embedding, L2-normalised, as a d x 1 float32 matrix.

    Args:
        model: the model.
        dataset: a dataset with ``paths`` and ``source`` (an image folder or list dataset), or
            a folder of images (searched recursively).
        out_dir: root of the feature tree (created).
        suffix: the feature suffix (the algorithm name given to the devkit).
        root: the folder the image paths are relative to (default: the dataset's folder, or
            its list file's folder).
        batch_size, flip, num_workers, progress: as in
            :func:`sphereface2.evaluate.runner.embed_dataset`.

    Returns:
        The written files, in dataset order.
    """
    if not isinstance(dataset, SampleListDataset):
        folder = Path(dataset)
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        images = scan_images(folder)
        if not images:
            raise ValueError(f"{folder}: no images")
        dataset = SampleListDataset(
            [(str(p), 0) for p in images], eval_transform(model.input_size), source=str(folder)
        )
    base = _image_root(dataset, root).resolve()
    targets = []
    for p in dataset.paths:
        resolved = Path(p).resolve()
        if not resolved.is_relative_to(base):
            raise ValueError(f"{p}: image is outside the image root {base}; give root=")
        targets.append(feature_path(resolved.relative_to(base), suffix, out_dir))
    embeddings = embed_dataset(model, dataset, batch_size, flip, num_workers, progress)
    features = l2_normalize(embeddings, f"embeddings of {dataset.source}")
    for target, feature in zip(targets, features):
        target.parent.mkdir(parents=True, exist_ok=True)
        write_feature(target, feature)
    return targets
