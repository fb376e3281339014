import subprocess
import sys

from sphereface2.cli import main


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
