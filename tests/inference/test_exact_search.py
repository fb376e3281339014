"""exact_top_k against a float64 loop reference: chunking, groups, memory maps."""

from __future__ import annotations

import numpy as np
import pytest
from search_loop_reference import reference_top_k, unit_rows

from sphereface2.inference import search
from sphereface2.inference.search import exact_top_k, group_starts


def _grouped(rng, groups, d, max_size):
    sizes = rng.integers(1, max_size + 1, groups)
    labels = np.repeat(np.arange(groups), sizes)
    return unit_rows(rng, labels.shape[0], d), labels


def _check(found, expected, labels, per_identity):
    for q, ref in enumerate(expected):
        scores = [s for s, _, _ in ref]
        # random data: neighbouring scores are far apart next to float32 rounding
        assert np.min(np.abs(np.diff(scores)), initial=1) > 1e-5
        keys = found.groups[q] if not per_identity else labels[found.rows[q]]
        assert keys.tolist() == [key for _, key, _ in ref]
        assert found.rows[q].tolist() == [row for _, _, row in ref]
        np.testing.assert_allclose(found.scores[q], scores, atol=1e-5)


@pytest.mark.parametrize("memory_bytes", [1, 64 << 20])  # 1: every chunk at the minimum
def test_identities_match_the_loop_reference(memory_bytes, monkeypatch):
    monkeypatch.setattr(search, "MIN_CHUNK_ROWS", 7)  # many chunks, groups cut nowhere
    rng = np.random.default_rng(0)
    gallery, labels = _grouped(rng, 60, 8, 5)
    queries = np.concatenate([gallery[[3, 50, 100]], unit_rows(rng, 4, 8)])
    found = exact_top_k(gallery, queries, 6, group_starts(labels), memory_bytes)
    assert found.scores.shape == found.groups.shape == found.rows.shape == (7, 6)
    # groups are indices of runs; here label k is run k
    np.testing.assert_array_equal(found.groups, labels[found.rows])
    _check(found, reference_top_k(gallery, labels, queries, 6), labels, True)
    assert found.rows[:3, 0].tolist() == [3, 50, 100]  # a gallery row finds itself first


def test_images_match_the_loop_reference(monkeypatch):
    monkeypatch.setattr(search, "MIN_CHUNK_ROWS", 5)
    rng = np.random.default_rng(1)
    gallery, labels = _grouped(rng, 20, 6, 4)
    queries = unit_rows(rng, 5, 6)
    found = exact_top_k(gallery, queries, 4, None, memory_bytes=1)
    np.testing.assert_array_equal(found.groups, found.rows)
    _check(found, reference_top_k(gallery, labels, queries, 4, per_identity=False), labels, False)


def test_a_group_larger_than_a_chunk_and_few_groups(monkeypatch):
    monkeypatch.setattr(search, "MIN_CHUNK_ROWS", 2)
    rng = np.random.default_rng(2)
    labels = np.array([0] * 9 + [1] + [2] * 4)
    gallery = unit_rows(rng, labels.shape[0], 5)
    queries = unit_rows(rng, 3, 5)
    found = exact_top_k(gallery, queries, 10, group_starts(labels), memory_bytes=1)
    assert found.scores.shape == (3, 3)  # k > identities: all of them
    _check(found, reference_top_k(gallery, labels, queries, 10), labels, True)


def test_a_memory_mapped_gallery(tmp_path):
    rng = np.random.default_rng(3)
    gallery, labels = _grouped(rng, 30, 4, 3)
    np.save(tmp_path / "g.npy", gallery)
    mapped = np.load(tmp_path / "g.npy", mmap_mode="r")
    queries = unit_rows(rng, 2, 4)
    a = exact_top_k(mapped, queries, 3, group_starts(labels))
    b = exact_top_k(gallery, queries, 3, group_starts(labels))
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_chunks_cover_whole_groups():
    bounds = np.array([0, 3, 4, 10, 11, 12])
    assert search._chunks(bounds, 4) == [(0, 2), (2, 3), (3, 5)]
    assert search._chunks(bounds, 100) == [(0, 5)]


def test_errors():
    with pytest.raises(ValueError, match="not grouped"):
        group_starts(np.array([0, 1, 0]))
    np.testing.assert_array_equal(group_starts(np.array([5, 5, 2, 7, 7])), [0, 2, 3])
    g = unit_rows(np.random.default_rng(0), 4, 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        exact_top_k(g, g, 0)
    with pytest.raises(ValueError, match=r"must be \(N, d\) and \(Q, d\)"):
        exact_top_k(g, g[:, :2], 1)
    with pytest.raises(ValueError, match="starts must begin at 0"):
        exact_top_k(g, g, 1, np.array([1, 2]))


def test_chunks_are_sized_by_the_memory_bound(monkeypatch):
    seen = []
    block_top_k = search._block_top_k

    def spy(gallery, queries, bounds, k, chunk_rows):
        seen.append((queries.shape[0], chunk_rows))
        return block_top_k(gallery, queries, bounds, k, chunk_rows)

    monkeypatch.setattr(search, "_block_top_k", spy)
    rng = np.random.default_rng(4)
    gallery, queries = unit_rows(rng, 50, 4), unit_rows(rng, 10, 4)
    exact_top_k(gallery, queries, 2, memory_bytes=12 * 10 * 3000)  # 12 B per score
    exact_top_k(gallery.astype(np.float64), queries, 2, memory_bytes=(12 * 10 + 16) * 3000)
    exact_top_k(gallery, queries, 2, memory_bytes=1)
    assert seen == [(10, 3000), (10, 3000), (10, search.MIN_CHUNK_ROWS)]
