"""``sphereface2 evaluate``: parsing, the printed table, report files and clear errors."""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import sys
import tempfile
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


# --------------------------------------------------------------------------------------
# Outputs are checked before any work; OS errors are one line
# --------------------------------------------------------------------------------------


def test_an_unwritable_report_folder_fails_before_the_model_is_loaded(
    data, main_with_evaluate, capsys
):
    blocker = data / "taken"
    blocker.write_text("a file, not a folder")
    # The model does not exist: the folder check must come first to be seen at all.
    argv = ["evaluate", str(data / "no_model.pt"), str(data / "lfw.bin")]
    assert main_with_evaluate([*argv, "--out", str(blocker / "eval")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"error: cannot create the report folder {blocker / 'eval'}: " in err


def test_a_report_folder_without_write_permission_fails_at_once(
    data, main_with_evaluate, monkeypatch, capsys
):
    out = data / "new_eval"
    argv = ["evaluate", str(data / "no_model.pt"), str(data / "lfw.bin"), "--out", str(out)]
    assert main_with_evaluate(argv) == 1
    assert "model not found" in capsys.readouterr().err
    assert not out.exists()  # the check wrote in the parent: no empty folder left behind

    def refuse(*args, **kwargs):  # as root, chmod cannot forbid: the OS call fails instead
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    denied = os.strerror(errno.EACCES)
    assert main_with_evaluate(argv) == 1
    assert f"cannot create the report folder {out}: {denied}" in capsys.readouterr().err
    out.mkdir()
    assert main_with_evaluate(argv) == 1
    assert f"cannot write a file in the report folder {out}: {denied}" in capsys.readouterr().err


def test_an_unwritable_ijb_cache_fails_before_the_model_is_loaded(data, main_with_evaluate, capsys):
    blocker = data / "cache_blocker"
    blocker.write_text("")
    argv = ["evaluate", str(data / "no_model.pt"), "--ijb", str(data), "--out", str(data / "o")]
    assert main_with_evaluate([*argv, "--ijb-cache", str(blocker / "feats.npy")]) == 1
    err = capsys.readouterr().err
    assert f"cannot create the folder of the IJB feature cache {blocker}: " in err


# --------------------------------------------------------------------------------------
# DATA after options; the report's command line re-runs the evaluation as it was
# --------------------------------------------------------------------------------------


def _help_examples() -> list[list[str]]:
    """The ``sphereface2 evaluate`` lines of ``evaluate --help`` as argument lists."""
    text = evaluate_cmd._EPILOG.replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        shlex.split(line, comments=True)[1:]
        for line in lines
        if line.startswith("sphereface2 evaluate ")
    ]


def test_every_help_example_parses():
    examples = _help_examples()
    assert len(examples) >= 6
    parser = cli.build_parser()
    for argv in examples:
        parser.parse_args(argv)  # SystemExit (exit status 2) on a bad example
    args = parser.parse_args(["evaluate", "runs/sf2", "--average-last", "5", "a.bin", "b.bin"])
    assert (args.model, args.data, args.average_last) == ("runs/sf2", ["a.bin", "b.bin"], 5)


def test_a_missing_model_is_reported_alone(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["evaluate", "--no-flip"])
    assert "the following arguments are required: MODEL\n" in capsys.readouterr().err


def _reparse(command: str) -> argparse.Namespace:
    words = shlex.split(command)
    assert words[:2] == ["sphereface2", "evaluate"]
    return cli.build_parser().parse_args(words[1:])


def _options(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k != "func"}


def test_the_command_line_holds_every_option():
    argv = ["evaluate", "my model.pt", "a.bin", "b b.bin", "--name", "A", "--name", "B"]
    argv += ["--lfw-root", "lfw", "--root", "imgs", "--average-last", "3", "--batch-size", "7"]
    argv += ["--no-flip", "--combine", "A", "B", "--out", "o", "--device", "cpu"]
    argv += ["--num-workers", "2", "--ijb", "ijb", "--ijb-name", "ijbb", "--ijb-1n"]
    argv += ["opensphere", "--ijb-cache", "c.npy", "--ijb-images", "crops", "--ijb-no-faceness"]
    argv += ["--megaface-probes", "p", "--megaface-distractors", "d", "--megaface-sizes", "10"]
    argv += ["100", "--megaface-suffix", "_x.bin"]
    args = cli.build_parser().parse_args(argv)
    # Every option differs from its default here, so every one must come back.
    parser = argparse.ArgumentParser()
    evaluate_cmd._add_arguments(parser)
    defaults = {a.dest: a.default for a in parser._actions if a.option_strings and a.dest != "help"}
    assert all(getattr(args, k) != v for k, v in defaults.items())
    command = evaluate_cmd.command_line(args)
    assert _options(_reparse(command)) == _options(args)
    assert "--combine A B" in command and "'my model.pt'" in command
    args = cli.build_parser().parse_args(["evaluate", "m.pt", "--combine"])  # no Combined
    assert _reparse(evaluate_cmd.command_line(args)).combine == []
    args = cli.build_parser().parse_args(["evaluate", "m.pt", "--", "-odd.bin"])
    assert _options(_reparse(evaluate_cmd.command_line(args))) == _options(args)


def test_the_report_command_reruns_the_same_evaluation(data, capsys, tmp_path):
    argv = ["evaluate", str(data / "run"), str(data / "lfw.bin"), "--batch-size", "5"]
    argv += ["--no-flip", "--out", str(tmp_path / "r"), str(data / "cplfw.bin"), "--combine"]
    argv += ["--device", "cpu"]
    args = cli.build_parser().parse_args(argv)
    assert args.func(args) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    again = _reparse(report["settings"]["command"])
    assert _options(again) == _options(args)
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert f"- command: {report['settings']['command']}" in markdown
