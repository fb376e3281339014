"""load_embedding_model: checkpoints, run folders (latest, model.pt, averaging) and errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402

from sphereface2.evaluate.model_loading import (  # noqa: E402
    TorchEmbeddingModel,
    find_run_folder,
    load_embedding_model,
    model_config_from_dict,
)
from sphereface2.train.checkpoint import average_state_dicts, save_checkpoint  # noqa: E402


def _images(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 3, tiny.SIZE, tiny.SIZE, generator=torch.Generator().manual_seed(1))


def _expected(state: dict, images: torch.Tensor) -> np.ndarray:
    module = tiny.build_tiny()
    module.load_state_dict(state)
    with torch.no_grad():
        return module(images).numpy()


def test_checkpoint_file_rebuilds_the_stored_backbone(tmp_path):
    weights = tiny.write_run_folder(tmp_path / "run")
    model = load_embedding_model(tmp_path / "run" / "checkpoints" / "ckpt_00000002.pt")
    assert isinstance(model, TorchEmbeddingModel)
    assert model.input_size == (tiny.SIZE, tiny.SIZE) and model.embedding_dim == tiny.DIM
    assert model.name == "run" and "iteration 2" in model.description
    out = model.embed(_images())
    assert out.dtype == np.float32 and out.shape == (3, tiny.DIM)
    np.testing.assert_array_equal(out, _expected(weights[2], _images()))


def test_run_folder_prefers_model_pt_then_latest_checkpoint(tmp_path):
    weights = tiny.write_run_folder(tmp_path / "a", with_model_pt=True)
    model = load_embedding_model(tmp_path / "a")
    assert "model.pt" in model.description
    np.testing.assert_array_equal(model.embed(_images()), _expected(weights[-1], _images()))

    weights = tiny.write_run_folder(tmp_path / "b")
    model = load_embedding_model(tmp_path / "b")
    assert "iteration 3" in model.description
    np.testing.assert_array_equal(model.embed(_images()), _expected(weights[3], _images()))


def test_average_last_is_the_mean_of_the_last_checkpoints(tmp_path):
    weights = tiny.write_run_folder(tmp_path / "run", iterations=(1, 2, 3, 4), with_model_pt=True)
    model = load_embedding_model(tmp_path / "run", average_last=3)
    assert "average of iterations [2, 3, 4]" in model.description
    expected = average_state_dicts([weights[2], weights[3], weights[4]])
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, expected[key]), key
    manual = {k: (weights[2][k] + weights[3][k] + weights[4][k]) / 3 for k in expected}
    for key in manual:
        torch.testing.assert_close(expected[key], manual[key], rtol=0, atol=1e-7)
    # average_last=1 means the newest checkpoint, not model.pt.
    one = load_embedding_model(tmp_path / "run", average_last=1)
    np.testing.assert_array_equal(one.embed(_images()), _expected(weights[4], _images()))


def test_find_run_folder(tmp_path):
    tiny.write_run_folder(tmp_path / "run", with_model_pt=True)
    run = tmp_path / "run"
    assert find_run_folder(run) == run
    assert find_run_folder(run / "model.pt") == run
    assert find_run_folder(run / "checkpoints" / "ckpt_00000001.pt") == run
    assert find_run_folder(tmp_path) is None


def test_missing_model_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model not found: .*nothing\.pt"):
        load_embedding_model(tmp_path / "nothing.pt")


def test_unknown_file_type_names_the_file(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"\x89HDF")
    with pytest.raises(ValueError, match=r"weights\.h5: unknown model file type '\.h5'"):
        load_embedding_model(path)


def test_garbage_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"broken\.pt: not a readable sphereface2 checkpoint"):
        load_embedding_model(path)


def test_foreign_torch_file_is_refused(tmp_path):
    path = tmp_path / "plain_state_dict.pt"
    torch.save(tiny.build_tiny().state_dict(), path)
    with pytest.raises(ValueError, match=r"plain_state_dict\.pt: expected a sphereface2"):
        load_embedding_model(path)


def test_checkpoint_without_config(tmp_path):
    path = save_checkpoint({"backbone": tiny.build_tiny().state_dict()}, tmp_path, 5)
    with pytest.raises(ValueError, match=r"ckpt_00000005\.pt: holds no training config"):
        load_embedding_model(path)


def test_weights_that_do_not_fit_the_config(tmp_path):
    config = tiny.train_config_dict(tiny.model_config(options={"width": 0.25}))
    state = tiny.build_tiny().state_dict()  # width 0.125 weights
    path = save_checkpoint({"config": config, "backbone": state}, tmp_path, 1)
    with pytest.raises(ValueError, match=r"ckpt_00000001\.pt: its weights do not fit"):
        load_embedding_model(path)


def test_average_last_errors(tmp_path):
    tiny.write_run_folder(tmp_path / "run", iterations=(1, 2))
    with pytest.raises(ValueError, match=r"average the last 3 checkpoints but the run has 2"):
        load_embedding_model(tmp_path / "run", average_last=3)
    ckpt = tmp_path / "run" / "checkpoints" / "ckpt_00000001.pt"
    with pytest.raises(ValueError, match="needs a run folder"):
        load_embedding_model(ckpt, average_last=2)


def test_empty_folder_and_wrong_image_size(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: folder holds no checkpoints/"):
        load_embedding_model(tmp_path / "empty")
    tiny.write_run_folder(tmp_path / "run")
    model = load_embedding_model(tmp_path / "run")
    with pytest.raises(ValueError, match=r"expects 16x16 images, got 20x20"):
        model.embed(torch.zeros(1, 3, 20, 20))


def test_model_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"src: model\.input_size: expected \[H, W\]"):
        model_config_from_dict({"backbone": "sfnet4", "input_size": [16]}, "src")
    with pytest.raises(ValueError, match=r"src: model\.colour: unknown key"):
        model_config_from_dict({"backbone": "sfnet4", "colour": 1}, "src")
    with pytest.raises(ValueError, match=r"src: model\.backbone: missing"):
        model_config_from_dict({"embedding_dim": 4}, "src")
