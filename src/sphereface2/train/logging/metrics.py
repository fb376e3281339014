"""Where a run's numbers go: a text log, a JSONL file, and optionally TensorBoard.

``metrics.jsonl`` holds one JSON object per line, each with ``iteration`` and a ``kind``
(``train`` or ``val``) plus the values; it is the machine-readable record. When a run is
resumed, rows newer than the checkpoint are dropped first (``truncate_jsonl``) so the file
never holds two different values for one iteration.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO


def format_duration(seconds: float) -> str:
    """Compact duration: ``45s``, ``12m05s``, ``3h07m``, ``2d04h``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def progress_line(
    iteration: int,
    total: int,
    epoch: int,
    loss: float,
    lr: float,
    images_per_s: float,
    eta_s: float,
    extra: dict[str, float] | None = None,
) -> str:
    """One human-readable progress line, e.g.
    ``it 1200/80000 (1.5%) ep 3 | loss 12.3456 | lr 0.1 | 845 img/s | eta 5h12m``."""
    parts = [
        f"it {iteration}/{total} ({100.0 * iteration / total:.1f}%) ep {epoch}",
        f"loss {loss:.4f}",
        f"lr {lr:.4g}",
    ]
    for key, value in (extra or {}).items():
        parts.append(f"{key} {value:.4g}")
    parts += [f"{images_per_s:.1f} img/s", f"eta {format_duration(eta_s)}"]
    return " | ".join(parts)


class TextLog:
    """Timestamped lines to ``path`` (appended) and, if ``echo``, to ``stream``."""

    def __init__(self, path: str | Path, echo: bool = True, stream: TextIO | None = None) -> None:
        self.path = Path(path)
        self.echo = echo
        self.stream = stream
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def info(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for line in message.splitlines() or [""]:
            self._file.write(f"{stamp} {line}\n")
        self._file.flush()
        if self.echo:
            print(message, file=self.stream or sys.stdout, flush=True)

    def close(self) -> None:
        self._file.close()


def truncate_jsonl(path: str | Path, max_iteration: int) -> int:
    """Drop rows with ``iteration > max_iteration`` (and unparsable tail lines left by a
    kill mid-write); returns the number of rows kept."""
    path = Path(path)
    if not path.exists():
        return 0
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and int(row.get("iteration", 0)) <= max_iteration:
            kept.append(line)
    path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    return len(kept)


class MetricsLogger:
    """Appends metric rows to a JSONL file and mirrors scalars to TensorBoard if enabled.

    TensorBoard is optional: with ``tensorboard=True`` but the package missing, the logger
    records a note in ``self.warning`` and carries on with JSONL only.
    """

    def __init__(self, jsonl_path: str | Path, tensorboard_dir: str | Path | None = None) -> None:
        self.jsonl_path = Path(jsonl_path)
        self._file = open(self.jsonl_path, "a", encoding="utf-8")  # noqa: SIM115
        self._tb: Any = None
        self.warning: str | None = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                self.warning = f"TensorBoard logging disabled: {err}"
            else:
                self._tb = SummaryWriter(log_dir=str(tensorboard_dir))

    def log(self, kind: str, iteration: int, values: dict[str, Any]) -> None:
        """Write one row ``{"kind": kind, "iteration": iteration, **values}``."""
        row = {"kind": kind, "iteration": iteration, "time": round(time.time(), 3), **values}
        self._file.write(json.dumps(row, allow_nan=True) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._tb.add_scalar(f"{kind}/{key}", value, iteration)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
