"""benchmarks/gallery_search.py: a tiny run writes complete JSON; its query generator."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sphereface2.inference import faiss_index

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load():
    spec = importlib.util.spec_from_file_location(
        "gallery_search", BENCHMARKS / "gallery_search.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_planted_queries_have_the_asked_cosine():
    bench = _load()
    rng = np.random.default_rng(0)
    gallery = bench.unit_gallery(300, 64, rng)
    np.testing.assert_allclose(np.linalg.norm(gallery, axis=1), 1.0, atol=1e-6)
    queries, sources = bench.planted_queries(gallery, 20, 0.8, rng)
    cosines = np.sum(queries * gallery[sources], axis=1)
    np.testing.assert_allclose(cosines, 0.8, atol=1e-5)
    assert len(set(sources.tolist())) == 20


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_tiny_run(tmp_path):
    out = tmp_path / "g.json"
    argv = ["--sizes", "600", "--dim", "16", "--queries", "8", "--k", "3", "--repeats", "1"]
    argv += ["--ivf-min", "500", "--nprobe", "2", "64", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gallery_search.py"), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["benchmark"] == "gallery_search"
    assert report["config"]["sizes"] == [600] and report["config"]["dim"] == 16
    (size,) = report["results"]
    assert size["rows"] == 600 and size["gallery_bytes"] == 600 * 16 * 4
    assert size["exact_finds_source"] == 1.0
    methods = {m["method"]: m for m in size["methods"]}
    exact = methods["exact"]
    assert exact["recall_at_1"] == 1.0 and len(exact["times_s"]) == 1 and exact["median_s"] > 0
    if faiss_index.faiss_available():
        assert set(methods) == {"exact", "faiss-flat", "faiss-ivf nprobe=2", "faiss-ivf nprobe=64"}
        assert methods["faiss-flat"]["recall_at_1"] == 1.0
        full = methods["faiss-ivf nprobe=64"]  # nlist 32 (~sqrt 600): every cell scanned
        assert (full["nlist"], full["nprobe"], full["recall_at_1"]) == (32, 32, 1.0)
        assert 0 <= methods["faiss-ivf nprobe=2"]["recall_at_1"] <= 1
    else:
        assert set(methods) == {"exact"}
    assert "recall@1" in done.stdout and "exact finds source" in done.stdout
