"""``sphereface2 compare MODEL IMAGE_A IMAGE_B``: the cosine, and the verdict with its source."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402

from sphereface2 import cli  # noqa: E402
from sphereface2.inference import load_model  # noqa: E402


@pytest.fixture
def main(monkeypatch):
    """sphereface2.cli.main with this family registered (whether or not cli.py lists it)."""
    families = tuple(dict.fromkeys((*cli._COMMAND_MODULES, "compare")))
    monkeypatch.setattr(cli, "_COMMAND_MODULES", families)
    return cli.main


@pytest.fixture
def data(tmp_path):
    tiny.write_run_folder(tmp_path / "run", with_model_pt=True)
    tiny.write_image_folder(tmp_path / "faces", identities=2, per_identity=2)
    a, b = tmp_path / "faces" / "id0" / "0.png", tmp_path / "faces" / "id1" / "1.png"
    cosine = load_model(tmp_path / "run", device="cpu").compare(str(a), str(b))
    return tmp_path, str(a), str(b), cosine


def _write_report(run: Path, threshold: float) -> Path:
    best = {"protocol": "OpenSphere best threshold (cosine)", "threshold": threshold}
    combined = {"name": "Combined", "num_pairs": 40, "opensphere_best_threshold": best}
    report = {
        "format": "sphereface2-evaluation",
        "version": 1,
        "model": {"name": "run", "description": "sfnet4 (16-d, 16x16), iteration 3 from X"},
        "verification": {"sets": [], "combined": combined},
    }
    (run / "eval").mkdir(parents=True, exist_ok=True)
    (run / "eval" / "report.json").write_text(json.dumps(report))
    return run / "eval" / "report.json"


def test_without_a_report_only_the_cosine(data, main, capsys):
    root, a, b, cosine = data
    assert main(["compare", str(root / "run"), a, b, "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"cosine: {cosine:.4f}"
    assert "no threshold is known" in out[1] and "--threshold" in out[1]
    assert str(root / "run") in out[1] and "eval/report.json" in out[1]


@pytest.mark.parametrize("offset, verdict", [(-0.01, "same"), (0.01, "different")])
def test_the_run_folders_report_decides(data, main, capsys, offset, verdict):
    root, a, b, cosine = data
    report = _write_report(root / "run", cosine + offset)
    assert main(["compare", str(root / "run" / "model.pt"), a, b, "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"cosine: {cosine:.4f}"
    assert out[1].startswith(f"verdict: {verdict} (cosine {cosine:.4f}")
    assert f"threshold {cosine + offset:.4f}" in out[1]
    assert "OpenSphere best threshold" in out[1] and "on Combined" in out[1]
    assert str(report) in out[1]
    assert len(out) == 2  # the report's model is this one (its path aside): no note


def test_given_threshold_and_other_report(data, main, capsys, tmp_path):
    root, a, b, cosine = data
    _write_report(root / "run", cosine + 0.5)
    assert main(["compare", str(root / "run"), a, b, "--threshold", str(cosine - 0.5)]) == 0
    out = capsys.readouterr().out
    assert "verdict: same" in out and "(given)" in out
    other = _write_report(tmp_path / "elsewhere", cosine - 0.5)
    argv = ["compare", str(root / "run" / "checkpoints" / "ckpt_00000001.pt"), a, b]
    assert main([*argv, "--report", str(other)]) == 0
    out = capsys.readouterr().out
    assert str(other) in out and "note: the report evaluated" in out  # iteration 1 != 3


def test_errors_are_one_line(data, main, capsys):
    root, a, b, _ = data
    assert main(["compare", str(root / "run"), a, str(root / "missing.png")]) == 1
    err = capsys.readouterr().err
    assert "missing.png" in err and len(err.strip().splitlines()) == 1
    _write_report(root / "run", 0.5)
    assert main(["compare", str(root / "run"), a, b, "--set", "LFW"]) == 1
    assert "no set named 'LFW'" in capsys.readouterr().err
