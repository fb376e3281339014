"""Text log, JSONL metrics (with truncation on resume), progress line."""

from __future__ import annotations

import io
import json

from sphereface2.train.logging import (
    MetricsLogger,
    TextLog,
    format_duration,
    progress_line,
    truncate_jsonl,
)


def test_jsonl_rows_and_truncation(tmp_path):
    path = tmp_path / "metrics.jsonl"
    logger = MetricsLogger(path)
    for it in (10, 20, 30):
        logger.log("train", it, {"loss": it / 10})
    logger.close()
    with open(path, "a") as handle:
        handle.write('{"kind": "train", "iter')  # a row torn by a kill
    assert truncate_jsonl(path, 20) == 2
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["kind"], r["iteration"], r["loss"]) for r in rows] == [
        ("train", 10, 1.0),
        ("train", 20, 2.0),
    ]


def test_tensorboard_mirror(tmp_path):
    logger = MetricsLogger(tmp_path / "m.jsonl", tensorboard_dir=tmp_path / "tb")
    logger.log("val", 5, {"lfw_acc": 0.9, "note": "text is skipped"})
    logger.close()
    assert logger.warning is None
    assert any((tmp_path / "tb").iterdir())


def test_text_log_and_progress_line(tmp_path):
    stream = io.StringIO()
    log = TextLog(tmp_path / "log.txt", stream=stream)
    line = progress_line(1200, 80000, 3, 12.34567, 0.1, 845.25, 3 * 3600 + 7 * 60, {"b": 5.5})
    log.info(line)
    log.close()
    assert (
        line
        == "it 1200/80000 (1.5%) ep 3 | loss 12.3457 | lr 0.1 | b 5.5 | 845.2 img/s | eta 3h07m"
    )
    assert stream.getvalue() == line + "\n"
    assert (tmp_path / "log.txt").read_text().rstrip().endswith(line)


def test_format_duration():
    assert [format_duration(s) for s in (5, 65, 3700, 200000, float("inf"))] == [
        "5s",
        "1m05s",
        "1h01m",
        "2d07h",
        "?",
    ]
