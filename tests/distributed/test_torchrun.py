"""``torchrun -m sphereface2 train`` on 2 CPU processes: the launcher path users take."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from distributed_harness import free_port

from sphereface2.data.packing import write_recordio
from sphereface2.train.checkpoint import list_checkpoints
from sphereface2.train.sharded_checkpoint import list_shard_files

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


def test_torchrun_trains_with_two_processes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    samples = [(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), c % 3) for c in range(24)]
    write_recordio(tmp_path / "data" / "train", samples)
    config = {
        "name": "torchrun",
        "model": {
            "backbone": "sfnet4",
            "embedding_dim": 8,
            "input_size": [16, 16],
            "options": {"width": 0.125},
        },
        "head": {"name": "sphereface2"},
        "data": {"train": str(tmp_path / "data"), "batch_size": 4},
        "optim": {"lr": 0.05},
        "schedule": {"iterations": 4},
        "runtime": {"device": "cpu", "log_every": 2, "checkpoint_every": 2},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "sphereface2",
        "train",
        str(tmp_path / "cfg.yaml"),
        "--out",
        str(tmp_path / "run"),
        "schedule.milestones=[3]",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["processes"] == 2
    assert summary["iteration"] == 4 and summary["images_per_s"] > 0
    assert "x 2 processes" in (run / "log.txt").read_text()
    assert [it for it, _ in list_checkpoints(run)] == [2, 4]
    assert len(list_shard_files(run / "checkpoints")) == 4
    assert (run / "model.pt").is_file()
    # only rank 0 printed the progress lines
    assert done.stdout.count("starting torchrun") == 1
