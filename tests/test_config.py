"""Typed config loading: errors name the file and key, overrides, save/load, diff."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sphereface2.config import (
    ConfigError,
    TrainConfig,
    config_diff,
    load_config,
    resume_blocking_diff,
    save_config,
)

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))

MINIMAL = """\
name: tiny
seed: 3
model: {backbone: sfnet4, embedding_dim: 8, input_size: [16, 16], options: {width: 0.125}}
head: {name: sphereface2, params: {r: 30, m: 0.3}}
data:
  train: some/where
  batch_size: 8
  val: [{name: lfw, path: lfw.bin}]
optim:
  weight_decay: 5e-4
schedule: {iterations: 100, milestones: [50, 80]}
"""


def _write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_minimal_config_gets_typed_values_and_defaults(tmp_path):
    cfg = load_config(_write(tmp_path, MINIMAL))
    assert isinstance(cfg, TrainConfig)
    assert cfg.model.input_size == (16, 16)
    assert cfg.optim.weight_decay == 5e-4  # "5e-4" is a float here, not YAML 1.1's string
    assert cfg.optim.lr == 0.1 and cfg.optim.momentum == 0.9
    assert cfg.data.val[0].name == "lfw"
    assert cfg.runtime.amp == "none"
    assert cfg.head.params == {"r": 30, "m": 0.3}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("optim:", "optim:\n  lr: abc"), "cfg.yaml: optim.lr: expected float, got 'abc'"),
        (("seed: 3", "seed: 3\nsed: 4"), "cfg.yaml: sed: unknown key; valid keys here:"),
        (("batch_size: 8", "batch_size: 8\n  bach: 1"), "cfg.yaml: data.bach: unknown key"),
        (("batch_size: 8", "batch_size: 8.5"), "cfg.yaml: data.batch_size: expected int"),
        (("seed: 3", "seed: true"), "cfg.yaml: seed: expected int, got True"),
        (("[16, 16]", "[16]"), "cfg.yaml: model.input_size: expected a list of 2 ints"),
        (("name: lfw, ", ""), "cfg.yaml: data.val[0].name: missing required key"),
        (("  train: some/where\n", ""), "cfg.yaml: data.train: missing required key"),
        (("{iterations: 100,", "{iterations: 100, type: step,"), "schedule.type: expected one"),
        (("[50, 80]", "[80, 50]"), "schedule.milestones: must be strictly increasing"),
        (("[50, 80]", "[50, 180]"), "schedule.milestones: must lie in"),
        (("batch_size: 8", "batch_size: 0"), "data.batch_size: must be >= 1"),
        (("optim:", "optim:\n  max_grad_norm: -1"), "optim.max_grad_norm: must be > 0"),
        (("optim:", "optim:\n  lr: .inf"), "optim.lr: expected a finite float"),
        (("seed: 3", "seed: 3\nruntime: {keep_last: 2, average_last: 5}"), "average_last"),
        (("optim:", "optim:\n  accumulation_steps: 3"), "not divisible by optim.accumul"),
        (("sfnet4", "sfnet5"), "cfg.yaml: model.backbone: unknown backbone 'sfnet5'; valid names"),
        (("sphereface2,", "spherefase2,"), "cfg.yaml: head.name: unknown head 'spherefase2'"),
        (("m: 0.3", "mm: 0.3"), "head.params.mm: head 'sphereface2' has no parameter 'mm'"),
        (("width: 0.125", "depth: 2"), "model.options.depth: backbone 'sfnet4' has no option"),
        (("width: 0.125", "input_size: 32"), "model.options.input_size: set it as model."),
        (("optim:\n  weight_decay: 5e-4", "optim: [1]"), "cfg.yaml: optim: expected a mapping"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path, edit, message):
    old, new = edit
    assert old in MINIMAL
    path = _write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)


def test_yaml_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML \(line 3"):
        load_config(_write(tmp_path, "a: 1\nb: [1,\n", "bad.yaml"))
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    path = _write(tmp_path, MINIMAL)
    cfg = load_config(
        path,
        [
            "optim.lr=0.05",
            "optim.max_grad_norm=1e5",
            "runtime.amp=bf16",
            "schedule.milestones=[10, 20]",
            "data.val.0.path=other.bin",
            "data.label_noise.p=0.2",
            "head.params.margin_type=A",
        ],
    )
    assert cfg.optim.lr == 0.05 and cfg.optim.max_grad_norm == 1e5
    assert cfg.runtime.amp == "bf16"
    assert cfg.schedule.milestones == [10, 20]
    assert cfg.data.val[0].path == "other.bin"
    assert cfg.data.label_noise.p == 0.2
    assert cfg.head.params["margin_type"] == "A"
    with pytest.raises(ConfigError, match=r"optim.lr: expected float, got 'fast' \(set by"):
        load_config(path, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="optim.lrr: unknown key"):
        load_config(path, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(path, ["optim.lr"])
    with pytest.raises(ConfigError, match="data.val.3: expected a list index below 1"):
        load_config(path, ["data.val.3.path=x"])
    with pytest.raises(ConfigError, match="seed: is a value, not a section"):
        load_config(path, ["seed.x=1"])


def test_save_load_round_trip_and_diff(tmp_path):
    cfg = load_config(_write(tmp_path, MINIMAL), ["runtime.log_every=7"])
    out = tmp_path / "saved.yaml"
    save_config(cfg, out)
    again = load_config(out)
    assert again == cfg
    assert config_diff(cfg, again) == []
    other = dataclasses.replace(
        cfg,
        optim=dataclasses.replace(cfg.optim, lr=0.2),
        runtime=dataclasses.replace(cfg.runtime, log_every=1),
    )
    assert config_diff(cfg, other) == ["optim.lr", "runtime.log_every"]
    assert resume_blocking_diff(cfg, other) == ["optim.lr"]


def test_resume_may_turn_on_skip_corrupt_but_not_change_model_init(tmp_path):
    path = _write(tmp_path, MINIMAL)
    cfg = load_config(path)
    assert cfg.model.init is None and cfg.model.init_strict is True
    skipping = load_config(path, ["data.skip_corrupt=true"])
    assert config_diff(cfg, skipping) == ["data.skip_corrupt"]
    assert resume_blocking_diff(cfg, skipping) == []  # the failure advice relies on it
    tuned = load_config(path, ["model.init=runs/a/model.pt", "model.init_strict=false"])
    assert tuned.model.init == "runs/a/model.pt" and tuned.model.init_strict is False
    # a resume never reads model.init; config.yaml keeps saying where the weights started
    assert resume_blocking_diff(cfg, tuned) == ["model.init", "model.init_strict"]
    out = tmp_path / "tuned.yaml"
    save_config(tuned, out)
    assert load_config(out) == tuned
    with pytest.raises(ConfigError, match=r"model\.init: must be a path \(or null"):
        load_config(path, ['model.init=""'])
    with pytest.raises(ConfigError, match=r"model\.init_strict: expected bool"):
        load_config(path, ["model.init_strict=maybe"])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.schedule.iterations >= max(cfg.schedule.milestones, default=0)


def test_configs_exist():
    names = {p.relative_to(REPO / "configs").as_posix() for p in CONFIGS}
    assert "demo.yaml" in names
    assert len([n for n in names if n.startswith("paper/")]) >= 15


# --------------------------------------------------------------------------------------
# Option values (checked by the builders at load time) and file encoding
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("r: 30,", "r: 30, lam: 1.5,"), "cfg.yaml: head.params.lam: must be < 1, got 1.5"),
        (("r: 30,", "r: -2,"), "cfg.yaml: head.params.r: must be > 0, got -2"),
        (("m: 0.3", "m: 0.3, margin_type: Q"), "head.params.margin_type: must be one of 'C', "),
        (("width: 0.125", "width: -1"), "cfg.yaml: model.options.width: must be a positive"),
        (("width: 0.125", "dropout: 1.5"), "cfg.yaml: model.options.dropout: must be in [0, 1)"),
        (("width: 0.125", "batch_norm: 2"), "model.options.batch_norm: must be true or false"),
        (("[16, 16]", "[8, 8]"), "cfg.yaml: model.input_size: 8x8 is too small: H and W must"),
    ],
)
def test_option_values_name_the_file_and_key(tmp_path, edit, message):
    old, new = edit
    assert old in MINIMAL
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, MINIMAL.replace(old, new, 1)))
    assert message in str(info.value)


def test_a_bad_option_value_from_an_override_says_so(tmp_path):
    path = _write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError) as info:
        load_config(path, ["head.params.lam=1.5"])
    assert str(info.value) == (
        f"{path}: head.params.lam: must be < 1, got 1.5 (set by the override head.params.lam=...)"
    )


def test_checking_option_values_allocates_nothing_big_and_keeps_the_random_stream(tmp_path):
    import sys

    import torch

    big = MINIMAL.replace(
        "backbone: sfnet4, embedding_dim: 8", "backbone: iresnet200, embedding_dim: 8"
    )
    state = torch.get_rng_state()
    dynamo_before = "torch._dynamo" in sys.modules
    load_config(_write(tmp_path, big))  # a real IResNet-200 would be 119M parameters
    assert torch.equal(torch.get_rng_state(), state)
    # The backbone is built on the meta device with its random fills skipped, which would
    # otherwise import torch._dynamo (about a second per process).
    assert dynamo_before or "torch._dynamo" not in sys.modules


def test_a_config_that_is_not_utf8_names_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.replace("name: tiny", "name: caf\xe9").encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: not UTF-8 text (byte 0xe9 on line 1); save the config as UTF-8"
    )
