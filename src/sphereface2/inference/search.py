"""Exact top-K search of unit-length query rows against a gallery, in bounded memory.

Arrays in, arrays out; no model, no files. The gallery's rows may be grouped: rows of one
group (one identity) are contiguous, and ``starts[g]`` is the first row of group ``g``.
A group's score is the best score of its rows (the usual 1:N identification rule: an
identity is as close as its closest image), and top-K ranks groups, so one identity with
many near-identical photos cannot fill all K places. Without groups every row is ranked on
its own.

Scores are inner products: cosines for L2-normalised rows. The gallery is read in chunks
of whole groups, sized so that a chunk's (queries x rows) scores and partition indices stay
under ``memory_bytes`` (64 MiB by default; a single identity larger than that is still one
chunk), so a memory-mapped gallery larger than RAM can be searched; the cost is one pass
over the gallery per block of queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Default bound of one chunk's transient scores and partition indices.
DEFAULT_MEMORY_BYTES = 64 << 20
#: Queries scored together; more would only make the chunks thinner.
QUERY_BLOCK = 1024
#: Fewest gallery rows per chunk, whatever the budget (smaller products waste time).
MIN_CHUNK_ROWS = 256


@dataclass(frozen=True)
class TopK:
    """Ranked matches per query, best first (ties: lower group index first).

    Attributes:
        scores: (Q, k) float32 group scores.
        groups: (Q, k) int64 group indices (the row index when ungrouped).
        rows: (Q, k) int64, the best row of each group.
    """

    scores: np.ndarray
    groups: np.ndarray
    rows: np.ndarray


def group_starts(labels: np.ndarray) -> np.ndarray:
    """First row of each run of equal labels; raises when a label comes back after another
    (rows must be grouped, e.g. sorted by label)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    starts = np.flatnonzero(np.concatenate([[True], labels[1:] != labels[:-1]]))
    run_labels = labels[starts]
    if np.unique(run_labels).shape[0] != run_labels.shape[0]:
        raise ValueError("gallery rows are not grouped: a label appears in two separate runs")
    return starts


def _chunks(bounds: np.ndarray, rows: int) -> list[tuple[int, int]]:
    """``(g0, g1)`` ranges of whole groups of about ``rows`` rows each (a larger group is a
    chunk of its own); ``bounds`` = group starts plus the row count."""
    out, g, count = [], 0, bounds.shape[0] - 1
    while g < count:
        end = int(np.searchsorted(bounds, bounds[g] + rows, side="right")) - 1
        end = min(max(end, g + 1), count)
        out.append((g, end))
        g = end
    return out


def _sorted(scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((groups, -scores), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(groups, order, 1)


def _keep_best(scores: np.ndarray, groups: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = scores.shape[1]
    if n <= k:
        return scores, groups
    part = np.argpartition(scores, n - k, axis=1)[:, n - k :]  # no negated copy of scores
    return np.take_along_axis(scores, part, 1), np.take_along_axis(groups, part, 1)


def _block_top_k(
    gallery: np.ndarray, queries: np.ndarray, bounds: np.ndarray, k: int, chunk_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    grouped = bounds.shape[0] - 1 != gallery.shape[0]
    best_s = np.empty((queries.shape[0], 0), np.float32)
    best_g = np.empty((queries.shape[0], 0), np.int64)
    for g0, g1 in _chunks(bounds, chunk_rows):
        r0, r1 = int(bounds[g0]), int(bounds[g1])
        scores = queries @ np.asarray(gallery[r0:r1], dtype=np.float32).T
        if grouped:
            scores = np.maximum.reduceat(scores, bounds[g0:g1] - r0, axis=1)
        ids = np.broadcast_to(np.arange(g0, g1, dtype=np.int64), scores.shape)
        chunk_s, chunk_g = _keep_best(scores, ids, k)
        best_s, best_g = _keep_best(
            np.concatenate([best_s, chunk_s], 1), np.concatenate([best_g, chunk_g], 1), k
        )
    return _sorted(best_s, best_g)


def _bytes_per_row(queries: int, gallery: np.ndarray) -> int:
    """Transient bytes per gallery row of a chunk: its float32 score and int64 partition
    index per query, and a float32 copy of the row when the gallery is not float32."""
    copy = 0 if gallery.dtype == np.float32 else 4 * gallery.shape[1]
    return 12 * queries + copy


def _best_rows(
    gallery: np.ndarray, queries: np.ndarray, bounds: np.ndarray, groups: np.ndarray
) -> np.ndarray:
    """The row of each chosen group that scored best (first of equals), query by query:
    only the K chosen groups' rows are read again."""
    rows = np.empty_like(groups)
    for q in range(groups.shape[0]):
        starts, ends = bounds[groups[q]], bounds[groups[q] + 1]
        index = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])
        scores = np.asarray(gallery[index], dtype=np.float32) @ queries[q]
        offsets = np.concatenate([[0], np.cumsum(ends - starts)[:-1]])
        for j, (offset, size) in enumerate(zip(offsets, ends - starts)):
            rows[q, j] = index[offset + int(np.argmax(scores[offset : offset + size]))]
    return rows


def exact_top_k(
    gallery: np.ndarray,
    queries: np.ndarray,
    k: int,
    starts: np.ndarray | None = None,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> TopK:
    """The ``k`` best groups (or rows) of ``gallery`` for each query, exactly.

    Args:
        gallery: (N, d) float32 rows (a memory map is read chunk by chunk).
        queries: (Q, d) rows.
        k: matches per query; fewer when the gallery has fewer groups.
        starts: first row of each group (:func:`group_starts`); None: rows are ranked one
            by one.
        memory_bytes: bound on one chunk's transient (queries x rows) scores and indices.

    Returns:
        A :class:`TopK` of width ``min(k, number of groups)``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if gallery.ndim != 2 or queries.ndim != 2 or gallery.shape[1] != queries.shape[1]:
        raise ValueError(
            f"gallery {gallery.shape} and queries {queries.shape} must be (N, d) and (Q, d)"
        )
    n = gallery.shape[0]
    if n == 0:
        raise ValueError("the gallery is empty")
    group_first = np.arange(n) if starts is None else np.asarray(starts, np.int64)
    bounds = np.append(group_first, n).astype(np.int64)
    if bounds[0] != 0 or np.any(np.diff(bounds) <= 0):
        raise ValueError("starts must begin at 0 and increase strictly below the row count")
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    width = min(k, bounds.shape[0] - 1)
    scores = np.empty((queries.shape[0], width), np.float32)
    groups = np.empty((queries.shape[0], width), np.int64)
    for q0 in range(0, queries.shape[0], QUERY_BLOCK):
        block = queries[q0 : q0 + QUERY_BLOCK]
        chunk_rows = max(MIN_CHUNK_ROWS, memory_bytes // _bytes_per_row(block.shape[0], gallery))
        s, g = _block_top_k(gallery, block, bounds, width, chunk_rows)
        scores[q0 : q0 + block.shape[0]], groups[q0 : q0 + block.shape[0]] = s, g
    rows = groups.copy() if starts is None else _best_rows(gallery, queries, bounds, groups)
    return TopK(scores, groups, rows)
