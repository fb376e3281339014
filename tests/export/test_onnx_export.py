"""ONNX export: onnxruntime matches PyTorch, the batch axis is dynamic, and evaluating the
ONNX file gives the checkpoint's accuracy."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest
import tiny_eval_data as tiny
import torch

from sphereface2.evaluate.model_loading import (
    METADATA_KEY,
    OnnxEmbeddingModel,
    TorchEmbeddingModel,
    load_embedding_model,
)
from sphereface2.evaluate.runner import evaluate_verification_sets
from sphereface2.evaluate.verification_sets import open_bin_set
from sphereface2.export.onnx_export import ExportCheckError, export_onnx


@pytest.fixture
def run_dir(tmp_path):
    tiny.write_run_folder(tmp_path / "run", with_model_pt=True)
    return tmp_path / "run"


def test_export_matches_pytorch_at_two_batch_sizes(run_dir, tmp_path):
    result = export_onnx(run_dir, tmp_path / "out" / "model.onnx")
    assert result["opset"] == 17 and "TorchScript" in result["exporter"]
    assert result["checked_batch_sizes"] == [2, 5]
    assert result["max_abs_diff"] < 1e-4
    assert isinstance(result["input"]["shape"][0], str)  # symbolic batch
    assert result["input"]["shape"][1:] == [3, tiny.SIZE, tiny.SIZE]
    proto = onnx.load(str(tmp_path / "out" / "model.onnx"))
    assert proto.opset_import[0].version == 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta[METADATA_KEY])["backbone"] == "sfnet4"
    assert "flip" in meta["sphereface2.flip_test"]

    # Independently of the built-in check: any batch size gives PyTorch's embeddings.
    onnx_model = load_embedding_model(tmp_path / "out" / "model.onnx")
    torch_model = load_embedding_model(run_dir)
    assert isinstance(onnx_model, OnnxEmbeddingModel) and onnx_model.fixed_batch is None
    assert onnx_model.input_size == (tiny.SIZE, tiny.SIZE)
    assert onnx_model.embedding_dim == tiny.DIM and "sfnet4" in onnx_model.description
    for batch in (1, 7):
        x = torch.randn(batch, 3, tiny.SIZE, tiny.SIZE)
        diff = np.abs(onnx_model.embed(x) - torch_model.embed(x)).max()
        assert diff < 1e-4


def test_static_batch_export_is_chunked_when_evaluated(run_dir, tmp_path):
    result = export_onnx(run_dir, tmp_path / "static.onnx", dynamic_batch=False)
    assert result["input"]["shape"][0] == 1 and result["checked_batch_sizes"] == [1]
    model = load_embedding_model(tmp_path / "static.onnx")
    assert model.fixed_batch == 1
    x = torch.randn(3, 3, tiny.SIZE, tiny.SIZE)
    reference = load_embedding_model(run_dir).embed(x)
    np.testing.assert_allclose(model.embed(x), reference, atol=1e-4)


def test_evaluating_the_onnx_file_gives_the_checkpoint_accuracy(run_dir, tmp_path):
    """The issue's "done means": same accuracy from model.onnx as from the checkpoint."""
    for seed, stem in enumerate(("lfw", "cplfw")):
        tiny.write_tiny_bin(tmp_path / f"{stem}.bin", pairs=40, seed=seed)
    export_onnx(run_dir, tmp_path / "model.onnx")
    results = {}
    for name, path in (("torch", run_dir), ("onnx", tmp_path / "model.onnx")):
        model = load_embedding_model(path)
        sets = [
            open_bin_set(tmp_path / f"{s}.bin", input_size=model.input_size)
            for s in ("lfw", "cplfw")
        ]
        results[name] = evaluate_verification_sets(model, sets, batch_size=16)
    for a, b in zip(results["torch"].all_sets(), results["onnx"].all_sets()):
        assert a.result.kfold.accuracy == b.result.kfold.accuracy
        assert a.result.best_threshold.accuracy == b.result.best_threshold.accuracy
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_export_from_a_module_needs_its_config(tmp_path):
    module = tiny.build_tiny()
    with pytest.raises(ValueError, match="needs its model config"):
        export_onnx(module, tmp_path / "m.onnx")
    result = export_onnx(module, tmp_path / "m.onnx", config=tiny.model_config())
    assert result["max_abs_diff"] < 1e-4


def test_onnx_models_cannot_be_exported_again(run_dir, tmp_path):
    export_onnx(run_dir, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="is not a PyTorch model"):
        export_onnx(tmp_path / "m.onnx", tmp_path / "again.onnx")


def test_check_failure_is_reported(run_dir, tmp_path):
    model = load_embedding_model(run_dir)
    assert isinstance(model, TorchEmbeddingModel)
    with pytest.raises(ExportCheckError, match="onnxruntime differs from PyTorch"):
        export_onnx(model, tmp_path / "m.onnx", atol=-1.0, rtol=0.0)  # nothing passes


def test_bad_onnx_file_names_it(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ValueError, match=r"broken\.onnx: not a loadable ONNX model"):
        load_embedding_model(path)


@pytest.mark.slow
def test_dynamo_exporter(run_dir, tmp_path):
    pytest.importorskip("onnxscript")
    with pytest.raises(ValueError, match="opset 18 or newer"):
        export_onnx(run_dir, tmp_path / "d.onnx", exporter="dynamo", opset=17)
    result = export_onnx(run_dir, tmp_path / "d.onnx", exporter="dynamo", opset=18)
    assert "dynamo" in result["exporter"] and result["max_abs_diff"] < 1e-4
    assert isinstance(result["input"]["shape"][0], str)


def test_missing_optional_package_says_how_to_install(run_dir, tmp_path, monkeypatch):
    export_onnx(run_dir, tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes the import fail
    with pytest.raises(RuntimeError, match="running an ONNX model needs the 'onnxruntime'"):
        load_embedding_model(tmp_path / "m.onnx")
