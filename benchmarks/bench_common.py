"""What every benchmark script shares: the machine's description and writing the report."""

from __future__ import annotations

import json
import platform
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
