"""``sphereface2 train``: argument parsing and one run through the command; model.pt reload."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from sphereface2.commands import train as train_command
from sphereface2.config import ConfigError, save_config
from sphereface2.train.model_file import load_trained_model
from sphereface2.train.run_folder import RunFolder


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sphereface2")
    train_command.register(parser.add_subparsers(dest="command"))
    return parser


def test_overrides_and_options_in_any_order():
    args = _parser().parse_args(
        ["train", "c.yaml", "a.b=1", "--resume", "auto", "c=2", "--device", "cpu"]
    )
    assert args.config == "c.yaml" and args.overrides == ["a.b=1", "c=2"]
    assert args.resume == "auto" and args.device == "cpu" and args.out is None


def test_missing_config_and_unknown_option(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["train"])
    assert "required: CONFIG" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "c.yaml", "--bogus"])


def test_help_mentions_resume_and_overrides(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "--help"])
    out = capsys.readouterr().out
    assert "--resume auto|PATH" in out and "KEY=VALUE" in out and "examples:" in out


def test_help_lists_the_run_folder(capsys):
    """Every entry of the run-folder layout (train.run_folder) is in --help."""
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "--help"])
    listing = capsys.readouterr().out.split("the run folder (--out", 1)[1]
    run = RunFolder(Path("r"))
    entries = {**run.files(), "lock": run.lock}
    folders = ("checkpoints", "tensorboard")
    shown = [path.name + ("/" if key in folders else "") for key, path in entries.items()]
    assert {"curves.png", "label_noise.json", "classes.json", ".lock"} <= set(shown)
    for name in shown:
        assert f"\n  {name} " in listing, name


def test_command_trains_then_model_file_reloads(tmp_path, tiny_config, monkeypatch):
    config = tmp_path / "tiny.yaml"
    save_config(tiny_config(), config)
    monkeypatch.chdir(tmp_path)  # the default run folder is runs/<name>
    overrides = ["schedule.iterations=3", "schedule.milestones=[2]"]
    args = _parser().parse_args(["train", str(config), *overrides, "--quiet"])
    assert args.func(args) == 0
    run = tmp_path / "runs" / "tiny"
    assert (run / "model.pt").is_file()

    trained = load_trained_model(run)
    assert trained.iteration == 3 and trained.config.schedule.iterations == 3
    assert not trained.backbone.training
    with torch.no_grad():
        emb = trained.backbone(torch.zeros(2, 3, 16, 16))
    assert emb.shape == (2, 8)
    ckpt = load_trained_model(run / "checkpoints" / "ckpt_00000003.pt")
    for key, value in ckpt.backbone.state_dict().items():
        assert torch.equal(value, trained.backbone.state_dict()[key])

    # resuming with a changed recipe through the command is refused with the key named
    args = _parser().parse_args(["train", str(config), "optim.lr=1.0", "--resume", "auto"])
    with pytest.raises(ValueError, match="optim.lr"):
        args.func(args)
    args = _parser().parse_args(["train", str(config), "optim.lr=fast"])
    with pytest.raises(ConfigError, match="optim.lr: expected float"):
        args.func(args)
