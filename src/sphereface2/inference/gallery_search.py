"""Search a gallery with face images: the K most similar identities per query.

Top-K is over identities by default: an identity scores as its best-matching image, and
each match names that image. ``per="image"`` ranks the gallery's images instead (an
identity may then appear several times). Search is exact by default (chunked matrix
products, bounded memory: :mod:`sphereface2.inference.search`); ``index="faiss"`` uses the
gallery's faiss index (``OUT/faiss.index``, written by :func:`add_faiss_index`), or builds
one in memory (:mod:`sphereface2.inference.faiss_index`).

Queries must be embedded by the gallery's model with the gallery's flip setting: a model
with another fingerprint is refused.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from sphereface2.inference import faiss_index
from sphereface2.inference.face_model import FaceModel
from sphereface2.inference.gallery import FAISS_FILE, META_FILE, Gallery, gallery_metadata
from sphereface2.inference.images import as_image_list, image_label
from sphereface2.inference.search import DEFAULT_MEMORY_BYTES, TopK, exact_top_k

PER_CHOICES = ("identity", "image")
INDEX_CHOICES = ("exact", "faiss")


@dataclass(frozen=True)
class Match:
    """One gallery match: the identity, the cosine, and the gallery image (row) it came from."""

    identity: str
    score: float
    path: str
    row: int


@dataclass(frozen=True)
class QueryResult:
    """The matches of one query image, best first."""

    query: str
    matches: list[Match]


def check_model(gallery: Gallery, model: FaceModel) -> None:
    """Refuse a model whose fingerprint differs from the one that built the gallery."""
    theirs, ours = gallery.model, model.fingerprint
    if not theirs.matches(ours):
        where = gallery.folder or "the gallery"
        raise ValueError(
            f"{where} was built with another model (weights {theirs.sha256[:12]}: "
            f"{theirs.description}); {model.source} has weights {ours.sha256[:12]}; "
            "embeddings of different models cannot be compared: search with the gallery's "
            "model or rebuild the gallery"
        )


def add_faiss_index(gallery: Gallery, kind: str = "auto", nlist: int | None = None) -> str:
    """Build a faiss index over a saved gallery, write ``faiss.index`` beside it and record it
    in ``gallery.json``. Returns the index's description."""
    if gallery.folder is None:
        raise ValueError("save the gallery before adding an index to it")
    index = faiss_index.build_index(gallery.embeddings, kind, nlist)
    faiss_index.save_index(index, gallery.folder / FAISS_FILE)
    description = faiss_index.describe_index(index)
    gallery.index = {"file": FAISS_FILE, "description": description, "rows": int(index.ntotal)}
    meta = gallery.folder / META_FILE
    meta.write_text(json.dumps(gallery_metadata(gallery)) + "\n", encoding="utf-8")
    return description


def open_faiss_index(gallery: Gallery, nprobe: int | None = None) -> tuple[Any, str]:
    """The gallery's saved index when it matches the rows, else one built in memory (with a
    note on stderr), with ``nprobe`` set (IVF only); and a line saying which."""
    saved = gallery.folder / FAISS_FILE if gallery.folder is not None else None
    index, where = None, "built in memory"
    if saved is not None and saved.is_file() and gallery.index is not None:
        index = faiss_index.load_index(saved)
        if int(index.ntotal) == len(gallery) and gallery.index.get("rows") == len(gallery):
            where = f"from {saved}"
        else:
            print(f"note: {saved} does not match the gallery; building an index", file=sys.stderr)
            index = None
    if index is None:
        index = faiss_index.build_index(gallery.embeddings)
    faiss_index.set_nprobe(index, nprobe)
    return index, f"{faiss_index.describe_index(index)}, {where}"


def top_k_matches(
    gallery: Gallery,
    queries: np.ndarray,
    top_k: int,
    per: str = "identity",
    index: Any = None,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> TopK:
    """Rank the gallery for embedded queries ((Q, d) unit rows): exact, or with a faiss
    ``index`` when given."""
    if per not in PER_CHOICES:
        raise ValueError(f"per must be one of {', '.join(PER_CHOICES)}, got {per!r}")
    starts = gallery.starts if per == "identity" else None
    if index is not None:
        return faiss_index.index_top_k(index, queries, top_k, starts)
    return exact_top_k(gallery.embeddings, queries, top_k, starts, memory_bytes)


def search_gallery(
    gallery: Gallery,
    model: FaceModel,
    images: Any,
    top_k: int = 5,
    per: str = "identity",
    index: Any = None,
) -> list[QueryResult]:
    """The ``top_k`` best identities (or images) for each query image.

    Args:
        gallery: from :func:`~sphereface2.inference.gallery.load_gallery`.
        model: the gallery's model (checked by fingerprint).
        images: query images, as :meth:`FaceModel.embed` accepts them.
        top_k: matches per query (fewer when the gallery has fewer identities).
        per: ``identity`` (best image per identity) or ``image``.
        index: a faiss index (:func:`open_faiss_index`), or None for the exact search.
    """
    check_model(gallery, model)
    items, _ = as_image_list(images)
    queries = model.embed(items, flip=gallery.flip)
    found = top_k_matches(gallery, queries, top_k, per, index)
    results = []
    for q, item in enumerate(items):
        matches = [
            Match(
                identity=gallery.identities[int(gallery.labels[row])],
                score=float(score),
                path=gallery.paths[int(row)],
                row=int(row),
            )
            for score, row in zip(found.scores[q], found.rows[q])
            if row >= 0  # an approximate index may find fewer than K
        ]
        results.append(QueryResult(image_label(item, q), matches))
    return results


def results_to_dict(results: list[QueryResult], **extra: Any) -> dict[str, Any]:
    """``{"results": [{"query", "matches": [{"identity", "score", "path"}]}], **extra}``."""
    out: dict[str, Any] = dict(extra)
    out["results"] = [
        {
            "query": r.query,
            "matches": [
                {"identity": m.identity, "score": m.score, "path": m.path} for m in r.matches
            ],
        }
        for r in results
    ]
    return out


def write_results(path: str | os.PathLike, results: list[QueryResult], **extra: Any) -> None:
    """Write :func:`results_to_dict` as JSON."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(results_to_dict(results, **extra), handle, indent=1)
        handle.write("\n")
