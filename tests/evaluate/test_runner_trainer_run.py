"""A real (tiny) training run folder: its model.pt and checkpoints load, and the evaluation's
InsightFace 10-fold accuracy equals the trainer's own validation of the averaged model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402

from sphereface2.config import config_from_dict  # noqa: E402
from sphereface2.evaluate.model_loading import load_embedding_model  # noqa: E402
from sphereface2.evaluate.runner import evaluate_verification_sets  # noqa: E402
from sphereface2.evaluate.verification_sets import open_bin_set  # noqa: E402
from sphereface2.train.trainer import train  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    tiny.write_tiny_rec(root / "train", [0, 0, 1, 1, 2, 2, 3, 3])
    tiny.write_tiny_bin(root / "lfw.bin", pairs=20, seed=3)
    raw = tiny.train_config_dict()
    raw["data"].update(
        {
            "train": str(root / "train.rec"),
            "val": [{"name": "lfw", "path": str(root / "lfw.bin")}],
            "val_every": 4,
        }
    )
    raw["schedule"].update({"iterations": 4, "milestones": []})
    raw["runtime"].update(
        {"device": "cpu", "checkpoint_every": 1, "keep_last": 0, "average_last": 2}
    )
    result = train(config_from_dict(raw, "tiny run"), root / "run", echo=False)
    assert result.status == "completed" and result.averaged_iterations == [3, 4]
    return root, result


def test_model_pt_equals_averaging_the_last_two_checkpoints(trained):
    root, _ = trained
    from_model_pt = load_embedding_model(root / "run")
    assert "average of iterations [3, 4]" in from_model_pt.description
    averaged = load_embedding_model(root / "run", average_last=2)
    for key, value in averaged.module.state_dict().items():
        assert (from_model_pt.module.state_dict()[key] == value).all(), key


def test_evaluation_agrees_with_the_trainers_validation(trained):
    root, result = trained
    model = load_embedding_model(root / "run")
    run = evaluate_verification_sets(model, [open_bin_set(root / "lfw.bin", "lfw")], flip=True)
    kfold = run.sets[0].result.kfold
    assert kfold.accuracy == pytest.approx(result.val_averaged["lfw_acc"], abs=1e-12)
    assert kfold.std == pytest.approx(result.val_averaged["lfw_acc_std"], abs=1e-12)
