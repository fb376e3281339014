"""benchmarks/real_faces.py on cfp_dev: the data preparation, a tiny end-to-end run (two
heads, clean and noisy labels) that writes the report, and resuming from finished cells.
Skipped where ../shared/data/cfp_dev is absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cfp_dev  # benchmarks/ is on pytest's path (pyproject.toml)

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
CFP = cfp_dev.find_cfp()
needs_cfp = pytest.mark.skipif(CFP is None, reason="../shared/data/cfp_dev is absent")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return cfp_dev.prepare(CFP, tmp_path_factory.mktemp("cfp") / "data")


@needs_cfp
def test_validation_split_is_carved_from_training_identities(prepared):
    full = [line.split()[0] for line in prepared.full.with_suffix(".txt").read_text().splitlines()]
    split = [
        line.split()[0] for line in prepared.split.with_suffix(".txt").read_text().splitlines()
    ]
    assert len(full) == 4900 and len(split) == 4200
    val_ids = {p.split("/")[1] for p in prepared.val_images.read_text().split() if "/" in p}
    assert len(val_ids) == cfp_dev.VAL_IDENTITIES
    assert all(p.startswith("train/") for p in prepared.val_images.read_text().split()[::2])
    assert not val_ids & {p.split("/")[1] for p in split}
    test_ids = {p.split("/")[1] for p in prepared.test_images.read_text().split()[::2]}
    assert not test_ids & {p.split("/")[1] for p in full}
    for pairs, profile in ((prepared.val_ff, False), (prepared.val_fp, True)):
        lines = [line.split() for line in pairs.read_text().splitlines()]
        assert len(lines) == 2 * cfp_dev.VAL_IDENTITIES * cfp_dev.VAL_GENUINE_PER_ID
        fold = len(lines) // cfp_dev.VAL_FOLDS
        labels = np.array([int(line[0]) for line in lines]).reshape(cfp_dev.VAL_FOLDS, fold)
        assert (labels[:, : fold // 2] == 1).all() and (labels[:, fold // 2 :] == 0).all()
        for label, a, b in lines:
            same = a.split("/")[1] == b.split("/")[1]
            assert same == (label == "1")
            assert Path(a).name.startswith("frontal")
            assert Path(b).name.startswith("profile" if profile else "frontal")
    assert prepared.val_ff_bin.is_file() and (prepared.full / "train.rec").is_file()


@needs_cfp
@pytest.mark.slow
def test_tiny_run_writes_the_report_and_resumes(tmp_path):
    out = tmp_path / "real_faces.json"
    args = [
        sys.executable,
        str(BENCHMARKS / "real_faces.py"),
        *("--scratch", str(tmp_path / "scratch"), "--out", str(out)),
        *("--heads", "sphereface2", "cosface", "--noise", "0", "0.5", "--seeds", "0"),
        *("--set", "schedule.iterations=3", "--set", "schedule.milestones=[2]"),
        *("--set", "schedule.warmup_iters=0"),
        *("--set", "runtime.checkpoint_every=1", "--set", "model.input_size=[16,16]"),
        *("--set", "model.options.width=0.125", "--set", "data.batch_size=16"),
    ]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert len(rows) == 2 * 2 * 2  # heads x noise x {FF, FP}
    keys = {"head", "recipe", "noise", "seed", "set", "acc_10fold", "acc_best_threshold", "minutes"}
    assert all(keys <= set(r) for r in rows)
    assert {r["set"] for r in rows} == {"FF", "FP"}
    assert all(0.3 < r["acc_10fold"] <= 1 and 0.3 < r["acc_best_threshold"] <= 1 for r in rows)
    audits = report["audit"]
    assert {a["head"] for a in audits} == {"sphereface2", "cosface"}
    assert all(a["noise"] == 0.5 and 0 <= a["precision_at_n"] <= 1 for a in audits)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sphereface2" in done.stdout and "drop" in done.stdout
    # A re-run finds every cell's result.json and trains nothing.
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(out.read_text())["rows"] == rows


def test_skips_cleanly_without_cfp_dev(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "real_faces.py"), "--cfp", str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "skipping" in done.stdout
