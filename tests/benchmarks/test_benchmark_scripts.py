"""benchmarks/train_speed.py and benchmarks/sharded_head.py: tiny runs write complete JSON."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(script: str, *args: str, out: Path) -> str:
    """Run a benchmark script in a fresh interpreter; its stdout (fails with its stderr)."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
@linux_only
def test_train_speed_tiny_run(tmp_path):
    out = tmp_path / "train.json"
    stdout = _run(
        "train_speed.py",
        *("--models", "sfnet20", "--batch", "2", "--classes", "40", "--input-size", "32"),
        *("--width", "0.125", "--embedding-dim", "8", "--warmup", "1", "--steps", "2"),
        *("--threads", "1"),
        out=out,
    )
    report = json.loads(out.read_text())
    assert report["benchmark"] == "train_speed"
    assert {"config", "load_average", "results"} <= set(report)
    cfg = report["config"]
    assert (cfg["device"], cfg["batch"], cfg["classes"], cfg["steps"]) == ("cpu", 2, 40, 2)
    assert cfg["optimizer"] == {"name": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
    (row,) = report["results"]
    assert row["model"] == "sfnet20" and "error" not in row
    assert row["head_implementation"] == "plain"  # auto at B x K = 80
    assert len(row["times_s"]) == 2 and all(t > 0 for t in row["times_s"])
    assert 0 < row["min_s"] <= row["median_s"]
    assert row["images_per_s"] == pytest.approx(2 / row["median_s"])
    assert row["backbone_parameters"] > 0 and row["backbone_gmacs_per_image"] > 0
    assert row["head_parameters"] == 40 * 8 + 1  # proxies and the bias
    assert row["peak_memory_bytes"] > 0
    assert math.isfinite(row["last_loss"])
    assert "sfnet20" in stdout and "img/s" in stdout


@pytest.mark.slow
@pytest.mark.distributed
@linux_only
def test_sharded_head_tiny_run(tmp_path):
    out = tmp_path / "sharded.json"
    # World 2 only: every rank process spends ~3 s starting up, and two launches (time,
    # memory) of two ranks exercise the launcher and the aggregation over ranks; the
    # world-1 ratios are checked in-process below. K = 4096, B = 16: the (B, K_local)
    # cosines exceed the 64 KiB mmap threshold, so the transient memory shows in the RSS.
    stdout = _run(
        "sharded_head.py",
        *("--worlds", "2", "--heads", "plain", "--classes", "4096", "--batch", "16"),
        *("--dim", "8", "--repeats", "2"),
        out=out,
    )
    report = json.loads(out.read_text())
    assert report["benchmark"] == "sharded_head"
    assert {"config", "load_average", "results"} <= set(report)
    (row,) = report["results"]
    assert row["world"] == 2 and row["head_name"] == "sphereface2"
    assert row["shard_classes"] == [2048, 2048] and row["local_batch"] == [8, 8]
    assert row["param_bytes_per_rank"] == [2048 * 8 * 4 + 4] * 2
    assert len(row["step_times_s"]) == 2 and 0 < row["min_s"] <= row["median_s"]
    assert len(row["rank_times_s"]) == 2
    assert row["peak_extra_max"] > 0
    assert len(row["memory_per_rank"]) == 2
    for mem in row["memory_per_rank"]:
        assert mem["rss_before"] > 0 and mem["rss_peak"] >= mem["rss_before"]
        assert mem["grad_bytes"] == 2048 * 8 * 4 + 4 + 8 * 8 * 4  # shard, bias, embeddings
    assert row["loss"] > 0
    assert "time_vs_world1" not in row  # no world 1 in this run to compare with
    assert stdout.splitlines()[2].startswith("plain      2") and "peak extra" in stdout


def test_sharded_head_ratios_and_table():
    bench = _load("sharded_head")
    rows = [
        {"head": "fused", "world": w, "median_s": s, "min_s": s, "oversubscribed": w > 2,
         "shard_classes": [10 // w] * w, "param_bytes_per_rank": [400 // w] * w,
         "peak_extra_max": e}
        for w, s, e in ((1, 2.0, 100), (2, 1.0, 60), (4, 1.5, 40))
    ]  # fmt: skip
    bench._add_ratios(rows)
    assert [r["time_vs_world1"] for r in rows] == [1.0, 0.5, 0.75]
    assert [r["shard_bytes_vs_world1"] for r in rows] == [1.0, 0.5, 0.25]
    assert [r["peak_extra_vs_world1"] for r in rows] == [1.0, 0.6, 0.4]
    config = {"batch": 8, "dim": 4, "classes": 10, "threads_per_rank": 1, "cores": 2,
              "repeats": 1, "processor": "cpu"}  # fmt: skip
    text = bench.table({"config": config, "load_average": {"start": [0.0], "end": [0.0]},
                        "results": rows})  # fmt: skip
    lines = text.splitlines()
    assert lines[4].startswith("fused      4") and lines[4].endswith(" *")
    assert "does not scale" in lines[-1]


def test_train_speed_refuses_fp16_on_the_cpu():
    bench = _load("train_speed")
    with pytest.raises(SystemExit, match="--amp fp16 needs --device cuda"):
        bench.parse_args(["--amp", "fp16"])


def test_train_speed_defaults_follow_the_device():
    bench = _load("train_speed")
    args = bench.parse_args(["--threads", "1"])
    assert (args.batch, args.classes, args.amp) == (8, 8631, "none")
    args = bench.parse_args(["--batch", "4", "--classes", "100", "--steps", "3"])
    assert (args.batch, args.classes, args.steps, args.warmup) == (4, 100, 3, 2)
    with pytest.raises(SystemExit, match="--classes must be >= 2"):
        bench.parse_args(["--classes", "1"])


def test_train_speed_names_the_head_implementation_that_runs():
    bench = _load("train_speed")
    assert bench.head_implementation("auto", 8, 8631, 512) == "plain"
    assert bench.head_implementation("auto", 512, 93431, 512) == "fused"
    assert bench.head_implementation("plain", 512, 93431, 512) == "plain"
    assert bench.head_implementation("fused", 2, 10, 512) == "fused"


def test_sharded_head_splits_one_global_batch():
    bench = _load("sharded_head")
    whole, labels = bench.local_batch(10, 4, 50, rank=0, world=1, seed=3)
    parts = [bench.local_batch(10, 4, 50, rank=r, world=3, seed=3) for r in range(3)]
    assert [p[0].shape[0] for p in parts] == [4, 3, 3]
    assert bool((whole == torch.cat([p[0] for p in parts])).all())
    assert bool((labels == torch.cat([p[1] for p in parts])).all())
    assert all(p[0].requires_grad for p in parts)


def test_sharded_head_refuses_a_world_larger_than_the_batch():
    bench = _load("sharded_head")
    with pytest.raises(SystemExit, match="--worlds"):
        bench.parse_args(["--worlds", "1", "8", "--batch", "4"])
