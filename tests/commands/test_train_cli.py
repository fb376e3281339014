"""The paper configs run as their headers and the README say: the full commands set every
data path, and a missing validation file stops ``train`` at once with the fix."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from sphereface2 import cli
from sphereface2.config import load_config
from sphereface2.train.validation import load_val_sets

REPO = Path(__file__).resolve().parents[2]
PAPER = sorted((REPO / "configs" / "paper").glob("*.yaml"))


def _commands(text: str, comment: str = "") -> list[list[str]]:
    """Every ``sphereface2 train`` / ``torchrun ... -m sphereface2 train`` command in
    ``text`` (lines after ``comment`` stripped, backslash continuations joined), as the
    arguments after ``sphereface2``."""
    lines = [line.removeprefix(comment) for line in text.splitlines()]
    joined = "\n".join(lines).replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        match = re.search(r"(?:^|\s)(?:-m )?sphereface2 (train .*)$", line.strip())
        if match and "configs/paper/" in match.group(1):
            found.append(shlex.split(match.group(1), comments=True))
    return found


def _check_sets_every_path(argv: list[str]) -> None:
    args = cli.build_parser().parse_args(argv)
    default = load_config(REPO / args.config)
    cfg = load_config(REPO / args.config, args.overrides)
    assert cfg.data.train != default.data.train, argv
    if "data.val=[]" in args.overrides:
        assert cfg.data.val == []
        return
    assert len(cfg.data.val) == len(default.data.val) > 0
    for mine, placeholder in zip(cfg.data.val, default.data.val):
        assert mine.path != placeholder.path and mine.name == placeholder.name, argv
        assert Path(mine.path).name == Path(placeholder.path).name


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.name)
def test_each_paper_header_shows_the_full_command(path):
    header = path.read_text().split("\nname:", 1)[0]
    (argv,) = _commands(header, comment="#")
    assert argv[1] == f"configs/paper/{path.name}"
    _check_sets_every_path(argv)
    assert "data.val=[]" in header  # how to train without validation sets


def test_the_readme_commands_set_every_path():
    commands = [a for a in _commands((REPO / "README.md").read_text()) if "--resume" not in a]
    assert len(commands) >= 2
    for argv in commands:
        _check_sets_every_path(argv)


def test_missing_validation_files_stop_train_before_it_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the configs' relative data/val/*.bin do not exist here
    config = REPO / "configs" / "paper" / "vggface2_sfnet20_sphereface2.yaml"
    argv = ["train", str(config), "data.train=/data/vggface2", "--out", str(tmp_path / "run")]
    assert cli.main(argv + ["data.val.1.path=" + str(tmp_path / "agedb_30.bin")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        "sphereface2 train: error: validation set 'lfw': file not found: data/val/lfw.bin "
        "(data.val.0.path); validation set 'agedb_30': file not found: "
        f"{tmp_path / 'agedb_30.bin'} (data.val.1.path); "
    )
    assert "validation set 'cplfw': file not found: data/val/cplfw.bin (data.val.3.path)" in err
    assert "e.g. data.val.0.path=/data/lfw.bin," in err and "data.val=[]" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_only_the_missing_sets_are_named(tmp_path):
    present = tmp_path / "lfw.bin"
    present.write_bytes(b"")
    with pytest.raises(FileNotFoundError) as info:
        load_val_sets([("lfw", str(present)), ("cplfw", "nope/cplfw.bin")], (112, 112))
    message = str(info.value)
    assert message.startswith(
        "validation set 'cplfw': file not found: nope/cplfw.bin (data.val.1.path); give the "
        "paths as overrides, e.g. data.val.1.path=/data/cplfw.bin, or train without "
        "validation sets: data.val=[]"
    )
    assert "data.val.0" not in message
