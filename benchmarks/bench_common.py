"""What every benchmark script shares: the machine's description and writing the report."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_report(report: dict[str, Any], out: Path, table: str) -> None:
    """Write ``report`` as JSON to ``out`` and print its table and where it went."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(table)
    print(f"\nwrote {out}")


def run_worker(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh process; its last stdout line parsed as JSON, or
    ``{"error": ...}`` when it timed out or failed (so one bad case never stops a table)."""
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-400:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])
