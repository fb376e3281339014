"""``sphereface2 data audit``: the files it writes, the printed table, errors naming files."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluate"))
import label_audit_fixture as fx  # noqa: E402

from sphereface2 import cli  # noqa: E402


def test_writes_csv_png_and_json_into_run_audit(tmp_path, capsys):
    run, _, noisy = fx.per_sample_classes_run(tmp_path)
    assert cli.main(["data", "audit", str(run), "--top", "5", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    n = len(noisy.changed_indices)
    assert f"detecting the {n} changed labels" in out
    assert f"precision@{n}" in out and "1.000" in out and "ROC AUC" in out
    audit = run / "audit"
    with open(audit / "audit.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and [r["rank"] for r in rows] == [str(i) for i in range(1, 13)]
    assert list(rows[0]) == [
        "rank",
        "index",
        "id",
        "label",
        "label_name",
        "own_cosine",
        "positive_logit",
        "best_other_class",
        "best_other_name",
        "best_other_cosine",
        "margin",
        "injected",
    ]
    assert {int(r["index"]) for r in rows[:n]} == set(noisy.changed_indices.tolist())
    assert all(r["injected"] == "yes" for r in rows[:n])
    assert rows[0]["id"] == str(10 + int(rows[0]["index"]))  # the record key
    summary = json.loads((audit / "audit.json").read_text())
    assert summary["metrics"]["average_precision"] == 1.0
    assert summary["metrics"]["base_rate"] == n / 12 and summary["top"] == 5
    assert summary["files"]["png"] == str(audit / "audit_worst.png")
    assert (audit / "audit_worst.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_out_and_explicit_data(tmp_path, capsys):
    run, rec, _ = fx.per_sample_classes_run(tmp_path)
    target = tmp_path / "elsewhere"
    argv = ["data", "audit", str(run), str(rec), "--out", str(target), "--no-flip"]
    assert cli.main(argv + ["--top", "0", "--device", "cpu"]) == 0
    assert json.loads((target / "audit.json").read_text())["flip"] is False
    assert not (run / "audit").exists()


def test_errors_name_the_file(tmp_path, capsys):
    (tmp_path / "empty_run").mkdir()
    assert cli.main(["data", "audit", str(tmp_path / "empty_run"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'empty_run' / 'model.pt'}: not found" in err
    run, _, _ = fx.per_sample_classes_run(tmp_path)
    smaller = fx.write_data(tmp_path / "smaller", list(range(8)))
    assert cli.main(["data", "audit", str(run), str(smaller), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert f"{run / 'label_noise.json'}: records noise for 12 samples" in err
