"""safetensors export: the round trip rebuilds the same model, from config.json, a training
config.yaml beside it, or the file's own metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny_eval_data as tiny
import torch
from safetensors.torch import load_file, save_file

from sphereface2.config import config_from_dict, save_config
from sphereface2.evaluate.model_loading import TorchEmbeddingModel, load_embedding_model
from sphereface2.export.safetensors_export import export_safetensors


def _images() -> torch.Tensor:
    return torch.randn(4, 3, tiny.SIZE, tiny.SIZE, generator=torch.Generator().manual_seed(2))


def test_round_trip_from_a_run_folder(tmp_path):
    tiny.write_run_folder(tmp_path / "run", iterations=(1, 2, 3))
    source = load_embedding_model(tmp_path / "run", average_last=2)
    result = export_safetensors(source, tmp_path / "export")
    assert result["weights"].endswith("model.safetensors")
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["format"] == "sphereface2-safetensors" and config["version"] == 1
    assert config["model"] == {
        "backbone": "sfnet4",
        "embedding_dim": tiny.DIM,
        "input_size": [tiny.SIZE, tiny.SIZE],
        "options": {"width": tiny.WIDTH},
    }
    stored = load_file(result["weights"])
    for key, value in source.module.state_dict().items():
        assert torch.equal(stored[key], value), key
    assert result["parameters"] == sum(p.numel() for p in source.module.parameters())
    for path in (tmp_path / "export", tmp_path / "export" / "model.safetensors"):
        loaded = load_embedding_model(path)
        assert isinstance(loaded, TorchEmbeddingModel) and loaded.name == "export"
        np.testing.assert_array_equal(loaded.embed(_images()), source.embed(_images()))


def test_config_from_metadata_or_a_training_yaml(tmp_path):
    module = tiny.build_tiny(seed=9)
    export_safetensors(module, tmp_path / "a", config=tiny.model_config())
    (tmp_path / "a" / "config.json").unlink()
    from_metadata = load_embedding_model(tmp_path / "a")
    with torch.no_grad():
        expected = module(_images()).numpy()
    np.testing.assert_array_equal(from_metadata.embed(_images()), expected)

    # Plain safetensors weights with the run's training config.yaml beside them.
    (tmp_path / "b").mkdir()
    save_file(dict(module.state_dict()), str(tmp_path / "b" / "weights.safetensors"))
    save_config(config_from_dict(tiny.train_config_dict(), "t"), tmp_path / "b" / "config.yaml")
    from_yaml = load_embedding_model(tmp_path / "b" / "weights.safetensors")
    np.testing.assert_array_equal(from_yaml.embed(_images()), expected)


def test_missing_config_and_broken_files_are_named(tmp_path):
    (tmp_path / "w").mkdir()
    save_file(dict(tiny.build_tiny().state_dict()), str(tmp_path / "w" / "model.safetensors"))
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors: no config\.json"):
        load_embedding_model(tmp_path / "w")
    (tmp_path / "w" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json: invalid JSON"):
        load_embedding_model(tmp_path / "w")
    (tmp_path / "w" / "config.json").write_text(
        json.dumps({"format": "sphereface2-safetensors", "version": 9})
    )
    with pytest.raises(ValueError, match="version 9 is not supported"):
        load_embedding_model(tmp_path / "w")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match=r"broken\.safetensors: not a readable safetensors"):
        load_embedding_model(broken)


def test_a_config_that_disagrees_with_the_model_is_refused(tmp_path):
    tiny.write_run_folder(tmp_path / "run")
    model = load_embedding_model(tmp_path / "run")
    with pytest.raises(ValueError, match="differs from the model's own"):
        export_safetensors(model, tmp_path / "x", config=tiny.model_config(embedding_dim=8))
