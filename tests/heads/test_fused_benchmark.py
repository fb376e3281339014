"""benchmarks/head_speed.py: its official-style head is the same loss, and a tiny run works."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from sphereface2.heads.sphereface2 import SphereFace2Head

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "head_speed.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("head_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_official_style_head_equals_the_plain_head(bench):
    plain = SphereFace2Head(13, 6).double()
    official = bench.OfficialStyleSphereFace2(plain.weight, plain.bias)
    x = torch.randn(7, 6, dtype=torch.float64)
    y = torch.tensor([0, 12, 5, 5, 3, 1, 7])
    grads = []
    for head in (plain, official):
        plain.zero_grad(set_to_none=True)
        xx = x.clone().requires_grad_(True)
        loss = head(xx, y)
        loss.backward()
        grads.append((loss.detach(), xx.grad, plain.weight.grad, plain.bias.grad))
    # BCE-with-logits has no softplus threshold: sigmoid(u) vs 1 above u = 20 differ ~1e-9.
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-12)


def test_unknown_method_is_refused(bench):
    with pytest.raises(SystemExit, match="unknown method 'plain:64'"):
        bench.main(["--methods", "plain:64"])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_tiny_run_writes_the_table_and_json(bench, tmp_path, capsys):
    out = tmp_path / "speed.json"
    bench.main(
        ["--classes", "300", "--batch", "8", "--dim", "16", "--threads", "1", "--repeats", "2",
         "--methods", "plain", "fused:64", "floor_chunked:64", "--out", str(out)]
    )  # fmt: skip
    report = json.loads(out.read_text())
    rows = {r["method"]: r for r in report["results"]}
    assert set(rows) == {"plain", "fused:64", "floor_chunked:64"}
    assert len(rows["plain"]["times_s"]) == 2 and rows["fused:64"]["chunk_size"] == 64
    assert (
        rows["plain"]["memory"]["peak_extra"] is not None
        and "memory" not in rows["floor_chunked:64"]
    )
    assert rows["fused:64"]["loss"] == pytest.approx(rows["plain"]["loss"], rel=1e-5)
    assert "fused:64" in capsys.readouterr().out
