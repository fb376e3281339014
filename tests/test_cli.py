"""``sphereface2`` itself: the command list, the module entry point, one-line errors."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sphereface2.cli import main
from sphereface2.commands.os_errors import OperationError, describe_os_error


def test_help_lists_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "data" in out


def test_entry_point_runs_as_module():
    proc = subprocess.run(
        [sys.executable, "-m", "sphereface2.cli", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("sphereface2 ")


# --------------------------------------------------------------------------------------
# Operating-system errors: one line naming the operation and the path, no traceback
# --------------------------------------------------------------------------------------


def _main_with_failing_export(monkeypatch, failure):
    """cli.main where ``sphereface2 export`` runs ``failure()`` instead of exporting."""
    from sphereface2.commands import export as export_cmd

    monkeypatch.setattr(export_cmd, "run_export", lambda args: failure())
    return main


def test_a_file_where_a_folder_should_be_is_one_line(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    main_ = _main_with_failing_export(
        monkeypatch, lambda: (blocker / "eval").mkdir(parents=True, exist_ok=True)
    )
    assert main_(["export", "M", "O"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"sphereface2 export: error: cannot create the folder {blocker}/eval: ")
    assert "a file stands where a folder should be" in err
    assert "SPHEREFACE2_DEBUG=1" in err


def test_permission_denied_names_the_operation_and_path(tmp_path, monkeypatch, capsys):
    # Tests may run as root, where chmod cannot forbid anything: the OS call fails instead.
    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(os, "mkdir", refuse)
    out = tmp_path / "ro" / "eval"
    main_ = _main_with_failing_export(monkeypatch, lambda: out.mkdir(parents=True))
    assert main_(["export", "M", "O"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"sphereface2 export: error: cannot create the folder {out}: {os.strerror(errno.EACCES)}"
    )


def test_rename_names_both_paths(tmp_path, monkeypatch, capsys):
    source = tmp_path / "a.tmp"
    source.write_text("x")
    target = tmp_path / "missing_dir" / "a"
    main_ = _main_with_failing_export(monkeypatch, lambda: os.replace(source, target))
    assert main_(["export", "M", "O"]) == 1
    err = capsys.readouterr().err
    assert f"cannot rename {source} to {target}: {os.strerror(errno.ENOENT)}" in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_names_the_file_being_written(monkeypatch, capsys):
    def write_a_lot():
        with open("/dev/full", "w") as handle:
            handle.write("x" * 10)

    assert _main_with_failing_export(monkeypatch, write_a_lot)(["export", "M", "O"]) == 1
    err = capsys.readouterr().err
    assert "error: cannot write /dev/full: " in err and "the disk is full" in err


def test_debug_env_shows_the_traceback(tmp_path, monkeypatch):
    blocker = tmp_path / "f"
    blocker.write_text("")
    monkeypatch.setenv("SPHEREFACE2_DEBUG", "1")
    main_ = _main_with_failing_export(monkeypatch, lambda: (blocker / "x").mkdir())
    with pytest.raises(NotADirectoryError):
        main_(["export", "M", "O"])


def test_messages_without_errno_are_kept():
    assert describe_os_error(FileNotFoundError("model not found: x.pt")) == "model not found: x.pt"
    err = OperationError(OSError(errno.EROFS, "Read-only file system"), "write in", "/mnt/r")
    assert describe_os_error(err) == (
        "cannot write in /mnt/r: Read-only file system (the file system is read-only)"
    )
