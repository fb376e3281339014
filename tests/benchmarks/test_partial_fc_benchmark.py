"""benchmarks/partial_fc.py: a tiny run writes complete JSON with the expected sizes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "partial_fc.py"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_partial_fc_tiny_run(tmp_path):
    out = tmp_path / "partial_fc.json"
    # B x K = 16 x 4096 float32 is 256 KiB, above the 64 KiB mmap threshold, so the exact
    # head's (B, K) logits show in the RSS
    args = ["--classes", "4096", "--batch", "16", "--dim", "8", "--repeats", "2"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--threads", "1", "--out", str(out)],
        env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["benchmark"] == "partial_fc"
    cfg = report["config"]
    assert (cfg["batch"], cfg["dim"], cfg["sample_rate"], cfg["repeats"]) == (16, 8, 0.1, 2)
    rows = {row["method"]: row for row in report["results"]}
    assert set(rows) == {"cosface_sampled", "cosface", "sphereface2"}
    for row in rows.values():
        assert "error" not in row, row.get("error")
        assert len(row["times_s"]) == 2 and all(t > 0 for t in row["times_s"])
        assert row["parameter_bytes"] >= 4096 * 8 * 4
        assert all(math.isfinite(v) and v > 0 for v in row["losses"])
        assert all(p > 0 for p in row["peak_rss_bytes"])
    # 16 labels are at most 16 positives, below ceil(0.1 * 4096) = 410
    assert rows["cosface_sampled"]["classes_used"] == 410
    assert rows["cosface"]["classes_used"] == rows["sphereface2"]["classes_used"] == 4096
    exact = rows["cosface"]["losses"]
    assert exact[0] == exact[1]  # the exact head sees the same step twice
    assert rows["cosface"]["peak_extra_max_bytes"] > 16 * 4096 * 4  # more than one (B, K)
    lines = done.stdout.splitlines()
    assert "cosface_sampled" in lines[2] and "410" in lines[2]
