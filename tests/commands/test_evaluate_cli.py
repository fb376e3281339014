"""``sphereface2 evaluate``: parsing, the printed table, report files and clear errors."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402

from sphereface2 import cli  # noqa: E402
from sphereface2.commands import evaluate as evaluate_cmd  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sphereface2")
    evaluate_cmd.register(parser.add_subparsers(dest="command"))
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


@pytest.fixture
def main_with_evaluate(monkeypatch):
    """sphereface2.cli.main with this family registered (until the lead adds it)."""
    families = tuple(dict.fromkeys((*cli._COMMAND_MODULES, "evaluate")))
    monkeypatch.setattr(cli, "_COMMAND_MODULES", families)
    return cli.main


@pytest.fixture
def data(tmp_path):
    tiny.write_run_folder(tmp_path / "run", with_model_pt=True)
    for seed, stem in enumerate(("lfw", "agedb_30", "calfw", "cplfw")):
        tiny.write_tiny_bin(tmp_path / f"{stem}.bin", pairs=20, seed=seed)
    return tmp_path


def test_defaults():
    args = _parser().parse_args(["evaluate", "M", "a.bin", "b.bin"])
    assert (args.model, args.data, args.flip, args.batch_size) == (
        "M",
        ["a.bin", "b.bin"],
        True,
        64,
    )
    assert args.name is None and args.combine is None and args.out is None
    args = _parser().parse_args(
        ["evaluate", "M", "a.bin", "--name", "X", "--no-flip", "--combine", "--average-last", "5"]
    )
    assert args.name == ["X"] and not args.flip and args.combine == [] and args.average_last == 5


def test_evaluate_four_sets_writes_the_report_into_the_run_folder(data, capsys):
    bins = [str(data / f"{s}.bin") for s in ("lfw", "agedb_30", "calfw", "cplfw")]
    assert _run(["evaluate", str(data / "run"), *bins, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("metric (%) [protocol]"))
    assert header.split()[3:] == ["LFW", "AgeDB-30", "CALFW", "CPLFW", "Combined"]
    assert "accuracy, mean +- std [InsightFace 10-fold]" in out
    assert "accuracy [OpenSphere best threshold]" in out
    eval_dir = data / "run" / "eval"
    report = json.loads((eval_dir / "report.json").read_text())
    assert report["verification"]["columns"] == ["LFW", "AgeDB-30", "CALFW", "CPLFW", "Combined"]
    assert report["settings"]["device"] == "cpu"
    assert (eval_dir / "report.md").is_file() and (eval_dir / "roc.png").stat().st_size > 0


def test_names_out_dir_no_flip_and_average_last(data, capsys, tmp_path):
    argv = ["evaluate", str(data / "run"), str(data / "lfw.bin"), str(data / "cplfw.bin")]
    argv += ["--name", "first", "--name", "second", "--no-flip", "--average-last", "2"]
    argv += ["--out", str(tmp_path / "elsewhere"), "--device", "cpu", "--batch-size", "7"]
    assert _run(argv) == 0
    report = json.loads((tmp_path / "elsewhere" / "report.json").read_text())
    ver = report["verification"]
    assert [s["name"] for s in ver["sets"]] == ["first", "second"]
    assert ver["flip"] is False and ver["batch_size"] == 7
    assert "average of iterations [2, 3]" in report["model"]["description"]


def test_default_out_dir_outside_a_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert evaluate_cmd.default_out_dir(str(tmp_path / "model.onnx")) == Path("eval")


def test_errors_are_one_clear_line(data, main_with_evaluate, capsys):
    lfw = str(data / "lfw.bin")
    assert main_with_evaluate(["evaluate", str(data / "nope.pt"), lfw]) == 1
    assert "sphereface2 evaluate: error: model not found:" in capsys.readouterr().err
    odd = data / "weights.xyz"
    odd.write_text("?")
    assert main_with_evaluate(["evaluate", str(odd), lfw]) == 1
    assert "unknown model file type '.xyz'" in capsys.readouterr().err
    missing = str(data / "agedb_30_missing.bin")
    assert main_with_evaluate(["evaluate", str(data / "run"), missing, "--device", "cpu"]) == 1
    assert f"verification data not found: {missing}" in capsys.readouterr().err
    argv = ["evaluate", str(data / "run"), lfw, "--name", "a", "--name", "b", "--device", "cpu"]
    assert main_with_evaluate(argv) == 1
    assert "--name was given 2 time(s) for 1 DATA file(s)" in capsys.readouterr().err
