"""The optional faiss index: same answers as the exact search where it is exact."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from search_loop_reference import unit_rows

from sphereface2.inference import faiss_index
from sphereface2.inference.search import exact_top_k, group_starts

needs_faiss = pytest.mark.skipif(not faiss_index.faiss_available(), reason="faiss not installed")


def _clustered(rng, centres, per, d, spread=0.05):
    """Rows near ``centres`` random directions; label = the centre (grouped)."""
    c = unit_rows(rng, centres, d)
    x = np.repeat(c, per, axis=0) + spread * rng.normal(size=(centres * per, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(centres), per)


def test_missing_faiss_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    assert not faiss_index.faiss_available()
    with pytest.raises(RuntimeError, match=r"pip install 'sphereface2\[faiss\]'"):
        faiss_index.build_index(np.zeros((2, 3), np.float32))


def test_default_nlist():
    assert [faiss_index.default_nlist(n) for n in (1, 10_000, 100_000, 1_000_000)] == [
        1,
        128,
        256,
        1024,
    ]


@needs_faiss
@pytest.mark.parametrize("per_identity", [True, False])
def test_flat_index_equals_the_exact_search(per_identity):
    rng = np.random.default_rng(0)
    gallery, labels = _clustered(rng, 40, 3, 16, spread=0.5)
    queries = unit_rows(rng, 6, 16)
    starts = group_starts(labels) if per_identity else None
    index = faiss_index.build_index(gallery)
    assert "IndexFlatIP" in faiss_index.describe_index(index)
    got = faiss_index.index_top_k(index, queries, 5, starts)
    want = exact_top_k(gallery, queries, 5, starts)
    np.testing.assert_array_equal(got.groups, want.groups)
    np.testing.assert_array_equal(got.rows, want.rows)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)


@needs_faiss
def test_ivf_scanning_every_cell_is_exact_and_saves(tmp_path):
    rng = np.random.default_rng(1)
    gallery, labels = _clustered(rng, 64, 8, 24)
    queries = gallery[::37] + 0.01 * unit_rows(rng, len(gallery[::37]), 24)
    index = faiss_index.build_index(gallery, kind="ivf", nlist=16)
    assert (index.nlist, index.nprobe, index.ntotal) == (16, 16, 512)  # nprobe <= nlist
    faiss_index.save_index(index, tmp_path / "i.index")
    loaded = faiss_index.load_index(tmp_path / "i.index")
    faiss_index.set_nprobe(loaded, 1000)
    assert "nlist 16, nprobe 16" in faiss_index.describe_index(loaded)
    starts = group_starts(labels)
    got = faiss_index.index_top_k(loaded, queries, 3, starts)
    want = exact_top_k(gallery, queries, 3, starts)
    np.testing.assert_array_equal(got.rows, want.rows)
    faiss_index.set_nprobe(loaded, 1)  # one cell: still finds the planted neighbour here
    assert (faiss_index.index_top_k(loaded, queries, 1).rows[:, 0] == np.arange(512)[::37]).all()


@needs_faiss
def test_fewer_found_than_asked_is_padded():
    rng = np.random.default_rng(2)
    gallery, labels = _clustered(rng, 8, 4, 8, spread=0.01)
    index = faiss_index.build_index(gallery, kind="ivf", nlist=8)
    faiss_index.set_nprobe(index, 1)  # one tight cluster per cell: one identity found
    got = faiss_index.index_top_k(index, gallery[:1], 3, group_starts(labels))
    assert got.groups[0, 0] == 0
    assert (got.groups[0, 1:] == -1).all() and (got.rows[0, 1:] == -1).all()
    assert np.isneginf(got.scores[0, 1:]).all()


@needs_faiss
def test_errors(tmp_path):
    g = unit_rows(np.random.default_rng(0), 4, 3)
    with pytest.raises(ValueError, match="unknown index kind 'hnsw'"):
        faiss_index.build_index(g, kind="hnsw")
    with pytest.raises(ValueError, match="needs at least 8 rows"):
        faiss_index.build_index(g, kind="ivf", nlist=8)
    (tmp_path / "bad.index").write_bytes(b"nonsense")
    with pytest.raises(ValueError, match="bad.index: not a readable faiss index"):
        faiss_index.load_index(tmp_path / "bad.index")
    with pytest.raises(ValueError, match="nprobe must be >= 1"):
        faiss_index.set_nprobe(faiss_index.build_index(g), 0)
