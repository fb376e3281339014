"""curves.png: drawn at the end of every run (and of a resumed or stopped one) from
metrics.jsonl; the plotting function on its own, with and without validation rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from sphereface2.train.logging.curves import load_curves, plot_training_curves
from sphereface2.train.trainer import train


def _rows(metrics: Path, kind: str) -> list[dict]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    return [row for row in rows if row["kind"] == kind]


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()  # reads every chunk and its checksum
    with Image.open(path) as image:
        assert image.size == (1100, 750)  # 11 x 7.5 inches at 100 dpi


def test_run_draws_curves_of_its_metrics(tmp_path, tiny_data, tiny_config):
    val = [{"name": "toy", "path": str(tiny_data / "val.bin")}]
    run = tmp_path / "run"
    train(tiny_config(data={"val": val, "val_every": 4}), run, echo=False)
    _assert_png(run / "curves.png")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["files"]["curves"] == str(run / "curves.png")
    assert summary["files"]["metrics"] == str(run / "metrics.jsonl")
    assert "label_noise" not in summary["files"]  # no noise, no record file

    # what is drawn is what was logged: the head's cosines included
    train_rows, val_rows = (
        _rows(run / "metrics.jsonl", "train"),
        _rows(run / "metrics.jsonl", "val"),
    )
    curves = load_curves(run / "metrics.jsonl")
    for key in ("loss", "lr", "pos_cos", "neg_cos"):
        assert curves.series[key] == (
            [r["iteration"] for r in train_rows],
            [r[key] for r in train_rows],
        )
    assert all(-1.0 <= r[key] <= 1.0 for r in train_rows for key in ("pos_cos", "neg_cos"))
    assert curves.val == {"toy": ([4, 8], [r["toy_acc"] for r in val_rows])}


def test_plotting_without_validation_rows(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    rows = [
        {"kind": "train", "iteration": i, "loss": 10.0 / i, "lr": 0.1, "epoch": 0}
        for i in (1, 2, 3)
    ]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"kind": "tr')  # torn tail
    out = plot_training_curves(metrics, tmp_path / "c.png")
    assert out == tmp_path / "c.png"
    _assert_png(out)
    curves = load_curves(metrics)
    assert curves.val == {}
    assert curves.series == {
        "loss": ([1, 2, 3], [10.0, 5.0, 10.0 / 3]),
        "lr": ([1, 2, 3], [0.1] * 3),
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "metrics.jsonl"]  # no temp


def test_missing_metrics_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl: metrics file not found"):
        plot_training_curves(tmp_path / "nope.jsonl", tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_resumed_run_redraws_curves_and_later_rows_win(tmp_path, tiny_config):
    run = tmp_path / "run"
    cfg = tiny_config()
    train(cfg, run, stop_after=4, echo=False)  # a stopped run draws its curves too
    _assert_png(run / "curves.png")
    assert load_curves(run / "metrics.jsonl").series["loss"][0] == [2, 4]
    first = (run / "curves.png").read_bytes()
    train(cfg, run, resume="auto", echo=False)
    _assert_png(run / "curves.png")
    assert (run / "curves.png").read_bytes() != first
    train_rows = _rows(run / "metrics.jsonl", "train")
    assert load_curves(run / "metrics.jsonl").series["loss"] == (
        [2, 4, 6, 8],
        [r["loss"] for r in train_rows],
    )

    # a process killed after logging past its last checkpoint leaves rows that the resumed
    # run logs again: the plotted value of an iteration is the later row's
    metrics = tmp_path / "killed.jsonl"
    rows = [(2, 5.0), (4, 4.0), (6, 3.5), (4, 4.5), (6, 3.0)]  # killed at 6, resumed from 2
    metrics.write_text(
        "".join(json.dumps({"kind": "train", "iteration": i, "loss": v}) + "\n" for i, v in rows)
    )
    assert load_curves(metrics).series["loss"] == ([2, 4, 6], [5.0, 4.5, 3.0])
    _assert_png(plot_training_curves(metrics, tmp_path / "killed.png"))
