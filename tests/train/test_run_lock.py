"""One process per run folder: a second ``train`` is refused at once naming the holder's
pid; the OS drops the lock when the holder dies (kill -9), even with forked children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sphereface2.cli import main as cli_main
from sphereface2.config import save_config
from sphereface2.train.run_lock import RunFolderLockedError, RunLock
from sphereface2.train.trainer import train

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: runs are unguarded")

# Takes the run folder's lock like a live training process, optionally forks a child that
# outlives it (as DataLoader workers briefly do), reports, then waits to be killed.
HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from sphereface2.train.run_lock import RunLock
    RunLock(sys.argv[1]).acquire()
    child = 0
    if sys.argv[2] == "fork":
        child = os.fork()
        if child == 0:
            time.sleep(60)
            os._exit(0)
    print(child, flush=True)
    time.sleep(60)
    """
)


def _hold(folder: Path, fork: bool = False) -> tuple[subprocess.Popen, int]:
    """A second process holding ``folder``'s lock, and its forked child's pid (0: none)."""
    folder.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), "fork" if fork else "-"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = holder.stdout.readline()  # printed once the lock is held
    assert line, "the holder exited before taking the lock"
    return holder, int(line)


def _kill9(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_second_train_is_refused_then_runs_after_kill9(tmp_path, tiny_config):
    run = tmp_path / "run"
    train(tiny_config(), run, stop_after=3, echo=False)
    before = _files(run)
    holder, _ = _hold(run)
    try:
        for resume in (None, "auto"):  # a fresh run, or a --resume auto beside a live run
            with pytest.raises(RunFolderLockedError) as info:
                train(tiny_config(), run, resume=resume, echo=False)
            message = str(info.value)
            assert f"{run}: another training process (pid {holder.pid})" in message
            assert "\n" not in message and info.value.pid == holder.pid
        # refused before anything was written (the lock file holds the holder's pid)
        assert (run / ".lock").read_text() == f"{holder.pid}\n"
        assert {**_files(run), ".lock": b""} == {**before, ".lock": b""}
    finally:
        _kill9(holder)
    result = train(tiny_config(), run, resume="auto", echo=False)  # no stale lock after -9
    assert result.status == "completed" and result.iteration == 8
    assert (run / ".lock").read_text().strip() == str(os.getpid())


def test_cli_refusal_is_one_line_with_the_pid(tmp_path, tiny_config, capsys):
    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(), config)
    run = tmp_path / "run"
    holder, _ = _hold(run)
    try:
        assert cli_main(["train", str(config), "--out", str(run), "--quiet"]) == 1
    finally:
        _kill9(holder)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"pid {holder.pid}" in err and str(run) in err
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written


def test_forked_child_does_not_keep_the_lock_of_a_killed_parent(tmp_path):
    holder, child = _hold(tmp_path / "run", fork=True)
    try:
        with pytest.raises(RunFolderLockedError):
            RunLock(tmp_path / "run").acquire()
        _kill9(holder)
        os.kill(child, 0)  # the child still lives...
        lock = RunLock(tmp_path / "run")
        lock.acquire()  # ...yet the lock is free
        lock.release()
    finally:
        os.kill(child, signal.SIGKILL)


def test_lock_refuses_a_second_holder_in_the_same_process(tmp_path):
    with RunLock(tmp_path) as first:
        assert first.held and (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(RunFolderLockedError, match=rf"pid {os.getpid()}\)"):
            RunLock(tmp_path).acquire()
    assert not first.held
    with RunLock(tmp_path):  # released on exit
        pass
