"""The log and metrics sink of the ranks other than 0 (rank 0 writes the run folder)."""

from __future__ import annotations

from typing import Any


class SilentLog:
    """Takes every log line and metrics record of a non-zero rank and writes nothing."""

    warning = None

    def info(self, message: str) -> None:
        del message

    def log(self, kind: str, iteration: int, values: dict[str, Any]) -> None:
        del kind, iteration, values

    def close(self) -> None:
        pass
