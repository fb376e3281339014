"""``sphereface2 evaluate MODEL --megaface-probes P --megaface-distractors D`` through
sphereface2.cli.main: rank-1 and TAR@FAR rows per distractor count, equal to the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402

from sphereface2 import cli  # noqa: E402
from sphereface2.evaluate.megaface_runner import (  # noqa: E402
    evaluate_megaface,
    write_megaface_features,
)
from sphereface2.evaluate.model_loading import load_embedding_model  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("megaface_cli")
    tiny.write_run_folder(root / "run", with_model_pt=True)
    tiny.write_image_folder(root / "probes", identities=3, per_identity=3)
    rng = np.random.default_rng(11)
    (root / "distractors").mkdir()
    for k in range(24):
        Image.fromarray(tiny.face(rng, 3 + k % 5)).save(root / "distractors" / f"{k:02d}.png")
    return root


def test_megaface_sizes_in_the_table_and_report(data, tmp_path, capsys):
    argv = ["evaluate", str(data / "run"), "--megaface-probes", str(data / "probes")]
    argv += ["--megaface-distractors", str(data / "distractors"), "--megaface-sizes", "20", "4"]
    assert cli.main([*argv, "--device", "cpu", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    for n in (4, 20):
        assert f"MegaFace, {n} distractors [MegaFace challenge 1 verification" in out
        assert f"MegaFace, {n} distractors [MegaFace challenge 1 identification" in out
    assert "rank-1 (%)" in out and "TAR@FAR=1e-6" in out
    model = load_embedding_model(data / "run", "cpu")
    want = evaluate_megaface(model, data / "probes", data / "distractors", (4, 20))
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    ident = {r["name"]: r["rates"]["rank-1"] for r in report["identification"]}
    assert ident == pytest.approx(
        {
            f"MegaFace, {s.num_distractors} distractors": s.identification.rates[0]
            for s in want.sizes
        }
    )
    rows = {(r["name"], r["method"]): r for r in report["ijb"]}
    for s in want.sizes:
        for read in s.verification.tar_at_far:
            row = rows[(f"MegaFace, {s.num_distractors} distractors", read.method)]
            assert row["num_impostor"] == s.verification.num_impostor
            if read.fpr * s.verification.num_impostor >= 1:
                assert row["tar_at_far"][repr(read.fpr)] == pytest.approx(read.tpr)
            else:  # a few hundred impostor pairs cannot resolve FAR 1e-6
                assert row["tar_at_far"][repr(read.fpr)] is None
                assert repr(read.fpr) in row["unresolved"]
    assert "9 probe images of 3 identities" in report["settings"]["MegaFace"]


def test_megaface_from_feature_files(data, tmp_path, capsys):
    model = load_embedding_model(data / "run", "cpu")
    write_megaface_features(model, data / "probes", tmp_path / "fs", "sf2")
    write_megaface_features(model, data / "distractors", tmp_path / "mf", "sf2")
    argv = ["evaluate", str(data / "run"), "--megaface-probes", str(tmp_path / "fs")]
    argv += ["--megaface-distractors", str(tmp_path / "mf"), "--megaface-suffix", "sf2"]
    assert cli.main([*argv, "--device", "cpu", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    # Default sizes: 10 and all 24.
    assert "MegaFace, 10 distractors" in out and "MegaFace, 24 distractors" in out
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert "(features: " in report["settings"]["MegaFace"]
    argv[-1] = "nope"
    assert cli.main([*argv, "--device", "cpu", "--out", str(tmp_path / "o")]) == 1
    assert "no feature files '*_nope.bin' (suffixes found: sf2)" in capsys.readouterr().err
