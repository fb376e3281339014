"""An optional faiss index for large galleries (``pip install 'sphereface2[faiss]'``).

The index holds the gallery's L2-normalised rows, so its inner product is the cosine:

- below :data:`IVF_FROM_ROWS` rows a flat inner-product index (``IndexFlatIP``): exact,
  the same ranking as :func:`~sphereface2.inference.search.exact_top_k` up to float
  rounding (it only keeps one code path for every size: on the benchmark's 2-core CPU it
  was slower than the numpy search, see benchmarks/results/gallery_search.json);
- from :data:`IVF_FROM_ROWS` rows an inverted-file index (``IndexIVFFlat``, inner product):
  spherical k-means cells, ``nlist`` = the power of two nearest sqrt(N) (a common choice:
  a query then scans about ``nprobe`` / sqrt(N) of the gallery), trained on at most
  64 x nlist rows drawn with a fixed seed. A search scans the ``nprobe`` cells nearest to
  the query (:data:`DEFAULT_NPROBE` unless told): approximate; the gallery benchmark
  measures its recall@1 against the exact search.

Identities: the index returns rows. For the K best identities it is asked for
K x (largest group) rows (capped at :data:`MAX_CANDIDATES`), enough for a flat index to
find the exact K best identities: every row above the K-th best identity's best row
belongs to one of at most K-1 better identities. Each identity keeps its best row.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from sphereface2.inference.search import TopK

#: Galleries of at least this many rows get an IVF index; smaller ones a flat one.
IVF_FROM_ROWS = 100_000
#: Cells scanned per query by default (of nlist = 256 at 10^5 rows, 1,024 at 10^6).
DEFAULT_NPROBE = 32
#: Most rows asked from the index per query when ranking identities.
MAX_CANDIDATES = 4096
#: Rows added to the index per call (bounds the copy from a memory-mapped gallery).
ADD_ROWS = 1 << 16


def faiss_available() -> bool:
    """Whether faiss can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def require_faiss() -> Any:
    """The faiss module, or RuntimeError saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise RuntimeError(
            "a faiss index needs the faiss-cpu package: pip install 'sphereface2[faiss]' "
            "(or pip install faiss-cpu)"
        ) from None
    return faiss


def default_nlist(rows: int) -> int:
    """The power of two nearest sqrt(rows) (at least 1)."""
    return max(1, 2 ** round(np.log2(max(rows, 1)) / 2))


def build_index(
    embeddings: np.ndarray,
    kind: str = "auto",
    nlist: int | None = None,
    seed: int = 0,
) -> Any:
    """A faiss inner-product index over ``embeddings`` (N, d) float32 unit rows.

    Args:
        embeddings: the gallery rows (a memory map is copied in blocks).
        kind: ``flat``, ``ivf`` or ``auto`` (IVF from :data:`IVF_FROM_ROWS` rows).
        nlist: IVF cells (default :func:`default_nlist`).
        seed: the k-means seed and the training sample's.
    """
    faiss = require_faiss()
    n, d = embeddings.shape
    if kind == "auto":
        kind = "ivf" if n >= IVF_FROM_ROWS else "flat"
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        nlist = nlist or default_nlist(n)
        if nlist > n:
            raise ValueError(
                f"an IVF index with {nlist} cells needs at least {nlist} rows, got {n}"
            )
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True  # unit centroids: cells on the sphere, as the rows are
        index.cp.seed = seed
        index.cp.max_points_per_centroid = 64
        sample = min(n, 64 * nlist)
        picked = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
        index.train(np.ascontiguousarray(embeddings[picked], dtype=np.float32))
        index.nprobe = min(DEFAULT_NPROBE, nlist)
    else:
        raise ValueError(f"unknown index kind {kind!r}; expected flat, ivf or auto")
    for start in range(0, n, ADD_ROWS):
        index.add(np.ascontiguousarray(embeddings[start : start + ADD_ROWS], dtype=np.float32))
    return index


def describe_index(index: Any) -> str:
    """One line: the kind, rows, and for IVF the cells and nprobe."""
    faiss = require_faiss()
    if isinstance(index, faiss.IndexIVF):
        return (
            f"faiss IndexIVFFlat, inner product, {index.ntotal} rows, nlist {index.nlist}, "
            f"nprobe {index.nprobe} (approximate)"
        )
    return f"faiss {type(index).__name__}, inner product, {index.ntotal} rows (exact)"


def save_index(index: Any, path: str | os.PathLike) -> None:
    """Write the index in faiss's own format (not a pickle)."""
    require_faiss().write_index(index, os.fspath(path))


def load_index(path: str | os.PathLike) -> Any:
    """Read an index written by :func:`save_index`."""
    faiss = require_faiss()
    try:
        return faiss.read_index(os.fspath(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unreadable"
        raise ValueError(f"{path}: not a readable faiss index ({first})") from None


def set_nprobe(index: Any, nprobe: int | None) -> None:
    """Set the cells an IVF index scans (ignored by a flat index)."""
    if nprobe is None:
        return
    if nprobe < 1:
        raise ValueError(f"nprobe must be >= 1, got {nprobe}")
    if isinstance(index, require_faiss().IndexIVF):
        index.nprobe = min(nprobe, index.nlist)


def index_top_k(index: Any, queries: np.ndarray, k: int, starts: np.ndarray | None = None) -> TopK:
    """Top-``k`` groups (or rows) per query from a faiss index (see the module docstring).

    Returns a :class:`TopK` of width ``min(k, groups)``; where an IVF index found fewer, the
    row is padded with score -inf and group and row -1.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = int(index.ntotal)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if starts is None:
        width = min(k, n)
        scores, rows = index.search(queries, width)
        scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
        return TopK(scores, rows.astype(np.int64), rows.astype(np.int64))
    starts = np.asarray(starts, np.int64)
    sizes = np.diff(np.append(starts, n))
    width = min(k, starts.shape[0])
    wanted = int(min(n, max(width, min(width * int(sizes.max()), MAX_CANDIDATES))))
    found_s, found_r = index.search(queries, wanted)
    out_s = np.full((queries.shape[0], width), -np.inf, np.float32)
    out_g = np.full((queries.shape[0], width), -1, np.int64)
    out_r = np.full((queries.shape[0], width), -1, np.int64)
    for q in range(queries.shape[0]):
        valid = found_r[q] >= 0
        rows, scores = found_r[q][valid], found_s[q][valid]
        groups = np.searchsorted(starts, rows, side="right") - 1
        _, first = np.unique(groups, return_index=True)  # rows come best first
        keep = np.sort(first)[:width]
        out_s[q, : keep.shape[0]] = scores[keep]
        out_g[q, : keep.shape[0]] = groups[keep]
        out_r[q, : keep.shape[0]] = rows[keep]
    return TopK(out_s, out_g, out_r)
