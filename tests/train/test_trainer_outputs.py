"""What a run writes (run folder, metrics, averaged model) and the numeric options."""

from __future__ import annotations

import json

import pytest
import torch

from sphereface2.config import load_config
from sphereface2.train.checkpoint import MODEL_FORMAT, list_checkpoints, load_checkpoint, load_file
from sphereface2.train.trainer import train


def _val(tiny_data) -> list[dict]:
    return [{"name": "toy", "path": str(tiny_data / "val.bin")}]


def test_run_folder_contents(tmp_path, tiny_data, tiny_config):
    cfg = tiny_config(
        data={"val": _val(tiny_data), "val_every": 4},
        runtime={"checkpoint_every": 2, "keep_last": 3, "average_last": 3, "tensorboard": True},
    )
    run = tmp_path / "run"
    result = train(cfg, run, echo=False)
    assert result.status == "completed" and result.iteration == 8
    assert load_config(run / "config.yaml") == cfg

    # keep_last prunes; model.pt is the mean of the last three checkpoints
    found = list_checkpoints(run)
    assert [it for it, _ in found] == [4, 6, 8]
    model = load_file(run / "model.pt", MODEL_FORMAT)
    assert model["averaged_iterations"] == [4, 6, 8] == result.averaged_iterations
    states = [load_checkpoint(path)["backbone"] for _, path in found]
    for key, value in model["backbone"].items():
        expected = sum(s[key].double() for s in states) / 3
        assert torch.allclose(value.double(), expected, atol=1e-7), key

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    val_rows = [r for r in rows if r["kind"] == "val"]
    assert [r["iteration"] for r in train_rows] == [2, 4, 6, 8]
    assert all({"loss", "lr", "images_per_s", "epoch"} <= r.keys() for r in train_rows)
    assert [r["iteration"] for r in val_rows] == [4, 8]
    assert all(0.0 <= r["toy_acc"] <= 1.0 for r in val_rows)
    assert result.val == {k: v for k, v in val_rows[-1].items() if k.startswith("toy")}
    assert set(result.val_averaged) == {"toy_acc", "toy_acc_std"}

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["iteration"] == 8
    assert summary["model"] == str(run / "model.pt")
    assert summary["num_classes"] == 4 and summary["num_images"] == 24
    log = (run / "log.txt").read_text()
    assert "it 8/8 (100.0%)" in log and "img/s" in log and "eta" in log
    assert "validation at iteration 4: toy" in log
    assert any((run / "tensorboard").iterdir())


def test_validation_does_not_change_training(tmp_path, tiny_data, tiny_config):
    plain = train(tiny_config(), tmp_path / "a", echo=False)
    # workers for training and validation: neither may perturb the trajectory
    with_val = tiny_config(data={"val": _val(tiny_data), "val_every": 3, "num_workers": 2})
    validated = train(with_val, tmp_path / "b", echo=False)
    a = load_checkpoint(plain.last_checkpoint)
    b = load_checkpoint(validated.last_checkpoint)
    for key in a["backbone"]:
        assert torch.equal(a["backbone"][key], b["backbone"][key])


def test_gradient_accumulation_matches_one_big_batch(tmp_path, tiny_config):
    one = train(tiny_config(), tmp_path / "one", echo=False)
    two = train(tiny_config(optim={"accumulation_steps": 2}), tmp_path / "two", echo=False)
    a = load_checkpoint(one.last_checkpoint)["backbone"]
    b = load_checkpoint(two.last_checkpoint)["backbone"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    assert one.final_loss == pytest.approx(two.final_loss, rel=1e-4)


@pytest.mark.parametrize(
    "runtime", [{"amp": "bf16"}, {"channels_last": True}], ids=["bf16", "channels_last"]
)
def test_precision_and_layout_options_train(tmp_path, tiny_config, runtime):
    result = train(tiny_config(runtime=runtime), tmp_path / "run", echo=False)
    assert result.iteration == 8 and result.final_loss == result.final_loss  # not NaN


def test_cosine_warmup_and_no_decay_options(tmp_path, tiny_config):
    cfg = tiny_config(
        schedule={"type": "cosine", "milestones": [], "warmup_iters": 2, "min_lr": 0.001},
        optim={"no_decay_bias_bn": True},
        runtime={"log_every": 1},
    )
    train(cfg, tmp_path / "run", echo=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows]
    assert lrs[0] == pytest.approx(0.05 * 0.1) and max(lrs) == pytest.approx(0.05)
    assert lrs[-1] < lrs[3]
