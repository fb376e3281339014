"""Fine-tuning: ``model.init`` starts a fresh run's backbone from a saved state dict
(arcface_torch's backbone.pth), a checkpoint, a run folder or a safetensors export;
strict by default, ``model.init_strict: false`` loads what fits; resume ignores it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sphereface2.backbones import build_backbone
from sphereface2.config import config_from_dict, config_to_dict
from sphereface2.evaluate.model_loading import load_embedding_model
from sphereface2.export.safetensors_export import export_safetensors
from sphereface2.train.checkpoint import load_checkpoint, load_file
from sphereface2.train.init_weights import init_backbone, read_init_weights
from sphereface2.train.trainer import ResumeError, train

SIZE = 16  # the tiny training set's image size (conftest.py)
IRESNET = {
    "backbone": "iresnet18",
    "embedding_dim": 8,
    "input_size": [SIZE, SIZE],
    "options": {"width": 0.125},
}
# A step this small leaves every O(1) weight exactly as it was in float32, so the first
# checkpoint shows the weights the run started from (BatchNorm statistics excepted: the
# forward pass updates them).
NO_STEP = {"lr": 1e-30}


def _iresnet(embedding_dim: int = 8) -> torch.nn.Module:
    return build_backbone(
        "iresnet18", embedding_dim=embedding_dim, input_size=(SIZE, SIZE), width=0.125
    )


def _pretrained_state(embedding_dim: int = 8, seed: int = 3) -> dict[str, torch.Tensor]:
    """An arcface_torch-style state dict: every float tensor moved off its initial value
    (so a fresh build can never pass for it)."""
    gen = torch.Generator().manual_seed(seed)
    state = _iresnet(embedding_dim).state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            state[key] = value + torch.randn(value.shape, generator=gen)
        else:  # num_batches_tracked
            state[key] = value + 17
    return state


@pytest.fixture
def backbone_pth(tmp_path) -> tuple[Path, dict[str, torch.Tensor]]:
    path = tmp_path / "backbone.pth"
    state = _pretrained_state()
    torch.save(state, path)  # what arcface_torch saves: backbone.module.state_dict()
    return path, state


def _first_checkpoint(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "ckpt_00000001.pt")


def test_a_fresh_run_starts_from_the_files_weights_and_a_fresh_head(
    tmp_path, tiny_config, backbone_pth
):
    path, state = backbone_pth
    run_cfg = {"checkpoint_every": 1}
    cfg = tiny_config(model={**IRESNET, "init": str(path)}, optim=NO_STEP, runtime=run_cfg)
    train(cfg, tmp_path / "tuned", stop_after=1, echo=False)
    tuned = _first_checkpoint(tmp_path / "tuned")
    names = dict(_iresnet().named_parameters())
    assert len(names) > 50
    for key in names:
        assert torch.equal(tuned["backbone"][key], state[key]), key

    # the head is the one a run from scratch draws (the init touches nothing else)
    scratch_cfg = tiny_config(model=IRESNET, optim=NO_STEP, runtime=run_cfg)
    train(scratch_cfg, tmp_path / "scratch", stop_after=1, echo=False)
    scratch = _first_checkpoint(tmp_path / "scratch")
    assert not torch.equal(scratch["backbone"]["conv1.weight"], state["conv1.weight"])
    for key, value in scratch["head"].items():
        assert torch.equal(tuned["head"][key], value), key

    log = (tmp_path / "tuned" / "log.txt").read_text()
    assert (
        f"model.init: loaded {len(state)} of the backbone's {len(state)} tensors from {path} "
        "(a state dict); the head starts fresh"
    ) in log


def test_strict_refuses_another_layout_and_writes_nothing(tmp_path, tiny_config):
    state = _pretrained_state(embedding_dim=16)  # another embedding layer
    del state["bn2.bias"]
    state["extra.weight"] = torch.ones(3)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    run = tmp_path / "run"
    with pytest.raises(ValueError) as info:
        train(tiny_config(model={**IRESNET, "init": str(path)}), run, echo=False)
    message = str(info.value)
    assert message.startswith(f"model.init: {path} (a state dict): its weights do not fit")
    assert (
        "1 missing: bn2.bias; 1 unexpected: extra.weight; 6 with another shape in the file: "
        in message
    )
    # 64 = the 512 channels at width 0.125, on a 1x1 final map
    assert "fc.weight 16x64 (backbone 8x64), fc.bias 16 (backbone 8)" in message
    assert "features.running_var 16 (backbone 8)" in message
    assert "model.init_strict=false" in message
    assert not run.exists()  # a refused start leaves nothing behind


def test_not_strict_loads_what_fits_and_logs_the_rest(tmp_path, tiny_config):
    state = _pretrained_state(embedding_dim=16)
    state["extra.weight"] = torch.ones(3)
    path = tmp_path / "other.pth"
    torch.save(state, path)

    module = _iresnet()
    fresh = {k: v.clone() for k, v in module.state_dict().items()}
    result = init_backbone(module, path, strict=False)
    changed = ["fc.weight", "fc.bias", "features.weight", "features.bias"]
    changed += ["features.running_mean", "features.running_var"]
    assert sorted(result.mismatched) == sorted(
        f"{key} {'x'.join(map(str, state[key].shape))} (backbone "
        f"{'x'.join(map(str, fresh[key].shape))})"
        for key in changed
    )
    assert result.unexpected == ["extra.weight"] and result.missing == []
    assert result.loaded == len(fresh) - len(changed) == result.total - len(changed)
    for key, value in module.state_dict().items():
        expected = fresh[key] if key in changed else state[key]
        assert torch.equal(value, expected), key

    cfg = tiny_config(model={**IRESNET, "init": str(path), "init_strict": False})
    train(cfg, tmp_path / "run", stop_after=1, echo=False)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert f"model.init: loaded {result.loaded} of the backbone's {result.total} tensors" in log
    assert (
        "skipped 6 (kept fresh, another shape in the file): fc.weight 16x64 (backbone 8x64), "
        in log
    )
    assert "model.init: skipped 1 (ignored, not in the backbone): extra.weight" in log


def test_not_strict_still_refuses_a_file_of_which_nothing_fits(tmp_path):
    path = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.ones(2, 2)}, path)
    with pytest.raises(ValueError, match=r"none of its 1 tensors fits .*encoder\.weight"):
        init_backbone(_iresnet(), path, strict=False)


def test_unreadable_and_missing_files_name_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^model\.init: .*nope\.pth: not found"):
        read_init_weights(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"^model\.init: .*junk\.pth: not a readable weights"):
        read_init_weights(junk)
    odd = tmp_path / "odd.pth"
    torch.save({"epoch": 3, "lr": 0.1}, odd)
    with pytest.raises(ValueError, match=r"holds neither a state dict .*\['epoch', 'lr'\]"):
        read_init_weights(odd)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"folder holds no model\.pt"):
        read_init_weights(empty)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_data) -> Path:
    """A finished tiny SFNet run (checkpoints at 3, 6, 8; model.pt) and its export."""
    root = tmp_path_factory.mktemp("source")
    raw = {
        "seed": 7,
        "model": {"backbone": "sfnet4", "embedding_dim": 8, "input_size": [SIZE, SIZE]},
        "head": {"name": "sphereface2"},
        "data": {"train": str(tiny_data), "batch_size": 4, "num_workers": 0},
        "schedule": {"iterations": 8},
        "runtime": {"device": "cpu", "checkpoint_every": 3, "keep_last": 0},
    }
    raw["model"]["options"] = {"width": 0.125}  # the tiny_config model (conftest.py)
    cfg = config_from_dict(raw, "source run config")
    train(cfg, root / "run", echo=False)
    export_safetensors(root / "run", root / "export")
    return root


@pytest.mark.parametrize(
    "source", ["checkpoint", "run folder", "model.pt", "safetensors", "safetensors folder"]
)
def test_every_source_gives_its_backbone(trained_run, source):
    run = trained_run / "run"
    ckpt = run / "checkpoints" / "ckpt_00000003.pt"
    path, reference, kind = {
        "checkpoint": (ckpt, ckpt, "sphereface2-checkpoint file, iteration 3"),
        "run folder": (run, run / "model.pt", "sphereface2-model file, iteration 8"),
        "model.pt": (run / "model.pt", run / "model.pt", "sphereface2-model file, iteration 8"),
        "safetensors": (trained_run / "export" / "model.safetensors", run / "model.pt", None),
        "safetensors folder": (trained_run / "export", run / "model.pt", None),
    }[source]
    expected = load_file(reference, ("sphereface2-checkpoint", "sphereface2-model"))["backbone"]
    weights = read_init_weights(path)
    assert weights.kind == (kind or "safetensors export")
    assert weights.state.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(weights.state[key], value), key


@pytest.mark.parametrize("wrapper", ["ddp prefix", "arcface_torch checkpoint"])
def test_wrapped_state_dicts(tmp_path, wrapper):
    state = _pretrained_state()
    if wrapper == "ddp prefix":
        saved = {f"module.{k}": v for k, v in state.items()}
    else:  # arcface_torch's checkpoint_gpu_0.pt
        saved = {"epoch": 2, "global_step": 100, "state_dict_backbone": state}
    torch.save(saved, tmp_path / "w.pt")
    module = _iresnet()
    result = init_backbone(module, tmp_path / "w.pt")
    assert result.loaded == result.total == len(state)
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_fine_tune_a_run_into_another_head(tmp_path, trained_run, tiny_config):
    """A sphereface2 run fine-tuned from another run's checkpoint with a new head."""
    ckpt = trained_run / "run" / "checkpoints" / "ckpt_00000006.pt"
    cfg = tiny_config(
        model={"init": str(ckpt)},
        head={"name": "cosface", "params": {}},
        optim=NO_STEP,
        runtime={"checkpoint_every": 1},
    )
    train(cfg, tmp_path / "tuned", stop_after=1, echo=False)
    tuned = _first_checkpoint(tmp_path / "tuned")["backbone"]
    source = load_checkpoint(ckpt)["backbone"]
    assert tuned.keys() == source.keys()
    for key in tuned:
        assert torch.equal(tuned[key], source[key]), key


def test_resume_ignores_init_and_refuses_a_changed_one(tmp_path, tiny_config, backbone_pth):
    path, _ = backbone_pth
    cfg = tiny_config(model={**IRESNET, "init": str(path)})
    run = tmp_path / "run"
    train(cfg, run, stop_after=3, echo=False)
    saved = json.loads((run / "summary.json").read_text())
    assert saved["iteration"] == 3
    path.unlink()  # a resume does not read it
    result = train(cfg, run, resume="auto", echo=False)
    assert result.status == "completed"
    assert (
        f"model.init not read ({path}): resuming, the checkpoint wins"
        in (run / "log.txt").read_text()
    )
    assert config_to_dict(cfg)["model"]["init"] == str(path)
    # evaluation opens a fine-tuned run like any other (its stored config has model.init)
    assert load_embedding_model(run).embedding_dim == 8
    other = tiny_config(model={**IRESNET, "init": str(tmp_path / "elsewhere.pth")})
    with pytest.raises(ResumeError, match=r"differs in model\.init"):
        train(other, run, resume="auto", echo=False)
