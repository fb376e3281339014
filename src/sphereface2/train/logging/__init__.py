"""Run logging: text log, JSONL metrics, optional TensorBoard, progress lines."""

from sphereface2.train.logging.metrics import (
    MetricsLogger,
    TextLog,
    format_duration,
    progress_line,
    truncate_jsonl,
)

__all__ = ["MetricsLogger", "TextLog", "format_duration", "progress_line", "truncate_jsonl"]
