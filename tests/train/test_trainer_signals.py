"""A run killed (SIGKILL) or interrupted (SIGINT) in a subprocess resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sphereface2.config import save_config
from sphereface2.train.checkpoint import list_checkpoints, load_checkpoint
from sphereface2.train.trainer import train

# The child trains the same config with every sample slowed down (so that the parent can
# signal it mid-run) and exits 130 on KeyboardInterrupt, as the CLI does.
CHILD = textwrap.dedent(
    """
    import sys, time
    import torch
    torch.set_num_threads(1)
    import sphereface2.train.building as building
    import sphereface2.train.trainer as trainer
    from sphereface2.config import load_config

    class Slow:
        def __init__(self, dataset):
            self.dataset = dataset
            self.num_classes = dataset.num_classes
            self.labels = dataset.labels

        def __len__(self):
            return len(self.dataset)

        def __getitem__(self, index):
            time.sleep(0.03)
            return self.dataset[index]

    real_open = building.open_training_set
    building.open_training_set = lambda *a, **k: Slow(real_open(*a, **k))
    try:
        trainer.train(load_config(sys.argv[1]), sys.argv[2], resume="auto", echo=False)
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


def _start_child(tmp_path: Path, cfg, run_dir: Path) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    config = tmp_path / "config.yaml"
    save_config(cfg, config)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(script), str(config), str(run_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, like a terminal job
    )


def _wait_for_checkpoint(child: subprocess.Popen, run_dir: Path, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list_checkpoints(run_dir)
        if found:
            return found[-1][0]
        if child.poll() is not None:
            raise AssertionError(f"child exited early: {child.communicate()[1].decode()}")
        time.sleep(0.01)
    child.kill()
    raise AssertionError("no checkpoint appeared")


def _final(run_dir: Path) -> dict:
    return load_checkpoint(list_checkpoints(run_dir)[-1][1])


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_then_resume_matches_uninterrupted(
    tmp_path, tiny_config, assert_same_state, workers
):
    cfg = tiny_config(
        data={"num_workers": workers},
        schedule={"iterations": 12, "milestones": [9]},
        runtime={"checkpoint_every": 2, "log_every": 1},
    )
    straight = train(cfg, tmp_path / "straight", echo=False)
    run_dir = tmp_path / "killed"
    child = _start_child(tmp_path, cfg, run_dir)
    killed_at = _wait_for_checkpoint(child, run_dir)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    last = list_checkpoints(run_dir)[-1][0]
    assert killed_at <= last < 12, "the child finished before it was killed"
    resumed = train(cfg, run_dir, resume="auto", echo=False)
    assert resumed.iteration == 12
    assert_same_state(_final(tmp_path / "straight"), _final(run_dir))
    assert resumed.final_loss == straight.final_loss
    # metrics.jsonl has one row per logged iteration, none duplicated by the resume
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows if r["kind"] == "train"] == list(range(1, 13))


@pytest.mark.slow
def test_sigint_writes_a_checkpoint_then_resume_matches(tmp_path, tiny_config, assert_same_state):
    cfg = tiny_config(
        data={"num_workers": 2},
        schedule={"iterations": 12, "milestones": [9]},
        runtime={"checkpoint_every": 100},  # only the interrupt writes one
    )
    train(cfg, tmp_path / "straight", echo=False)
    run_dir = tmp_path / "interrupted"
    child = _start_child(tmp_path, cfg, run_dir)
    deadline = time.monotonic() + 60
    while (
        not (run_dir / "metrics.jsonl").exists()
        or "train" not in (run_dir / "metrics.jsonl").read_text()
    ):
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.01)
    os.killpg(child.pid, signal.SIGINT)  # to the whole group, workers included (Ctrl-C)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 130, stderr.decode()
    found = list_checkpoints(run_dir)
    assert len(found) == 1 and 2 <= found[0][0] < 12
    log = (run_dir / "log.txt").read_text()
    assert f"SIGINT received: stopped at iteration {found[0][0]}" in log
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["iteration"] == found[0][0]
    assert summary["files"]["curves"] == str(run_dir / "curves.png")  # drawn on the stop
    train(cfg, run_dir, resume="auto", echo=False)
    assert_same_state(_final(tmp_path / "straight"), _final(run_dir))
