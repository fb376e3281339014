"""``sphereface2 export`` and ``sphereface2 embed`` through the command line."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402

from sphereface2 import cli  # noqa: E402
from sphereface2.commands import export as export_cmd  # noqa: E402
from sphereface2.evaluate.model_loading import load_embedding_model  # noqa: E402
from sphereface2.export.onnx_export import supported_opsets  # noqa: E402


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sphereface2")
    export_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def run_dir(tmp_path):
    tiny.write_run_folder(tmp_path / "run", with_model_pt=True)
    return tmp_path / "run"


def test_export_onnx_prints_opset_and_difference(run_dir, tmp_path, capsys):
    assert _run(["export", str(run_dir), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "ONNX opset 17 via torch.onnx.export, TorchScript-based" in out
    assert "onnxruntime check at batch sizes 2, 5: max abs diff" in out
    assert (tmp_path / "out" / "model.onnx").is_file()
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_export_both_then_evaluate_each(run_dir, tmp_path, capsys):
    argv = ["export", str(run_dir), str(tmp_path / "both"), "--format", "both"]
    assert _run(argv + ["--average-last", "2"]) == 0
    assert "parameters) and" in capsys.readouterr().out
    x = np.random.default_rng(0).standard_normal((2, 3, tiny.SIZE, tiny.SIZE), np.float32)
    images = torch.from_numpy(x)
    source = load_embedding_model(run_dir, average_last=2).embed(images)
    np.testing.assert_allclose(
        load_embedding_model(tmp_path / "both" / "model.onnx").embed(images), source, atol=1e-4
    )
    np.testing.assert_array_equal(load_embedding_model(tmp_path / "both").embed(images), source)


def test_export_to_an_onnx_file_and_static_batch(run_dir, tmp_path, capsys):
    assert _run(["export", str(run_dir), str(tmp_path / "m.onnx"), "--static-batch"]) == 0
    assert "batch fixed at 1" in capsys.readouterr().out
    with pytest.raises(ValueError, match="a .onnx OUT is only for --format onnx"):
        _run(["export", str(run_dir), str(tmp_path / "m.onnx"), "--format", "both"])


def test_embed_folder(run_dir, tmp_path, capsys):
    rows = tiny.write_image_folder(tmp_path / "faces", identities=2, per_identity=3)
    argv = ["embed", str(run_dir), str(tmp_path / "faces"), str(tmp_path / "e"), "--device", "cpu"]
    assert _run(argv + ["--batch-size", "4"]) == 0
    assert "6 x 16 float32" in capsys.readouterr().out
    assert np.load(tmp_path / "e.npy").shape == (6, tiny.DIM)
    with open(tmp_path / "e.csv", newline="") as handle:
        index = list(csv.reader(handle))
    assert index[1:] == [[str(i), p, str(label)] for i, (p, label) in enumerate(rows)]
    argv = ["embed", str(run_dir), str(tmp_path / "faces"), str(tmp_path / "n"), "--no-flip"]
    assert _run(argv + ["--normalize", "--device", "cpu"]) == 0
    np.testing.assert_allclose(np.linalg.norm(np.load(tmp_path / "n.npy"), axis=1), 1, rtol=1e-5)


def test_errors_through_main(run_dir, tmp_path, monkeypatch, capsys):
    families = tuple(dict.fromkeys((*cli._COMMAND_MODULES, "export")))
    monkeypatch.setattr(cli, "_COMMAND_MODULES", families)
    assert cli.main(["export", str(tmp_path / "none"), str(tmp_path / "o")]) == 1
    assert "sphereface2 export: error: model not found:" in capsys.readouterr().err
    argv = ["embed", str(run_dir), str(tmp_path / "nothing_here"), str(tmp_path / "o")]
    assert cli.main(argv + ["--device", "cpu"]) == 1
    assert "sphereface2 embed: error: data not found:" in capsys.readouterr().err


def test_embed_checks_its_output_before_loading_the_model(tmp_path, monkeypatch, capsys):
    families = tuple(dict.fromkeys((*cli._COMMAND_MODULES, "export")))
    monkeypatch.setattr(cli, "_COMMAND_MODULES", families)
    blocker = tmp_path / "file"
    blocker.write_text("")
    # Neither the model nor the data exist: the output check must come first.
    argv = ["embed", str(tmp_path / "none.pt"), str(tmp_path / "none"), str(blocker / "emb")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"cannot create the folder of the embeddings output {blocker}: " in err
    (tmp_path / "emb.csv").mkdir()  # a folder where an output file goes
    assert cli.main(["embed", "none.pt", "none", str(tmp_path / "emb")]) == 1
    assert f"cannot write the embeddings output {tmp_path / 'emb.csv'}: " in capsys.readouterr().err


def test_export_opset_out_of_range_is_one_line_without_the_graph(run_dir, tmp_path, capsys):
    assert cli.main(["export", str(run_dir), str(tmp_path / "o"), "--opset", "3"]) == 1
    captured = capsys.readouterr()
    assert "graph(" not in captured.out + captured.err
    lines = captured.err.strip().splitlines()
    assert lines == [
        "sphereface2 export: error: the torchscript exporter writes opset 7 or newer, up to "
        f"{supported_opsets('torchscript').stop - 1}; got opset=3"
    ]
    assert not (tmp_path / "o").exists()  # refused before anything was written
    assert supported_opsets("torchscript").start == 7
    assert supported_opsets("dynamo").start == 18
