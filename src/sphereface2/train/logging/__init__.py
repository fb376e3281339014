"""Run logging: text log, JSONL metrics, optional TensorBoard, progress lines."""

from sphereface2.train.logging.metrics import (
    MetricsLogger,
    TextLog,
    format_duration,
    progress_line,
    truncate_jsonl,
)
from sphereface2.train.logging.silent import SilentLog

__all__ = [
    "MetricsLogger",
    "SilentLog",
    "TextLog",
    "format_duration",
    "progress_line",
    "truncate_jsonl",
]
