"""embed_to_files: OUT.npy / OUT.csv / OUT.json for an image folder, a list, a .rec and a .bin."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tiny_eval_data as tiny

from sphereface2.data.bin_format import BinPairDataset
from sphereface2.data.transforms import eval_transform
from sphereface2.evaluate.model_loading import TorchEmbeddingModel
from sphereface2.evaluate.runner import embed_dataset
from sphereface2.export.embeddings import embed_to_files, open_image_set, output_paths


@pytest.fixture
def model():
    return TorchEmbeddingModel(tiny.build_tiny(5), tiny.model_config(), name="tiny")


def _csv(path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_image_folder(model, tmp_path):
    rows = tiny.write_image_folder(tmp_path / "faces", identities=3, per_identity=2)
    summary = embed_to_files(model, tmp_path / "faces", tmp_path / "out" / "emb", batch_size=4)
    emb = np.load(tmp_path / "out" / "emb.npy")
    assert emb.dtype == np.float32 and emb.shape == (6, tiny.DIM)
    assert _csv(tmp_path / "out" / "emb.csv") == [["row", "key", "label"]] + [
        [str(i), path, str(label)] for i, (path, label) in enumerate(rows)
    ]
    assert summary["rows"] == 6 and summary["flip"] and not summary["normalized"]
    assert json.loads((tmp_path / "out" / "emb.json").read_text())["kind"] == "folder"
    # Raw flip-fused embeddings, exactly what embed_dataset gives.
    images = open_image_set(tmp_path / "faces", model.input_size)
    np.testing.assert_array_equal(emb, embed_dataset(model, images.dataset, batch_size=4))


def test_list_file_with_normalize(model, tmp_path):
    rows = tiny.write_image_folder(tmp_path / "faces", identities=2, per_identity=2)
    listing = tmp_path / "faces" / "train.txt"
    listing.write_text("".join(f"{p} {7 + label}\n" for p, label in reversed(rows)))
    embed_to_files(model, listing, tmp_path / "list.npy", normalize=True, flip=False)
    emb = np.load(tmp_path / "list.npy")
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    index = _csv(tmp_path / "list.csv")
    assert [r[1:] for r in index[1:]] == [[p, str(7 + label)] for p, label in reversed(rows)]
    meta = json.loads((tmp_path / "list.json").read_text())
    assert meta["normalized"] and not meta["flip"] and "L2-normalised" in meta["embeddings"]


def test_recordio_keys_and_labels(model, tmp_path):
    rec = tiny.write_tiny_rec(tmp_path / "train", [2, 0, 1, 1])
    summary = embed_to_files(model, rec, tmp_path / "rec")
    assert summary["kind"] == "recordio" and summary["rows"] == 4
    assert _csv(tmp_path / "rec.csv")[1:] == [
        ["0", "10", "2"],
        ["1", "11", "0"],
        ["2", "12", "1"],
        ["3", "13", "1"],
    ]


def test_bin_rows_follow_the_file(model, tmp_path):
    tiny.write_tiny_bin(tmp_path / "lfw.bin", pairs=3)
    embed_to_files(model, tmp_path / "lfw.bin", tmp_path / "bin", batch_size=2)
    emb = np.load(tmp_path / "bin.npy")
    assert emb.shape == (6, tiny.DIM)
    assert _csv(tmp_path / "bin.csv")[1:] == [[str(i), str(i), ""] for i in range(6)]
    dataset = BinPairDataset(tmp_path / "lfw.bin", eval_transform(model.input_size))
    np.testing.assert_array_equal(emb, embed_dataset(model, dataset, batch_size=2))


def test_output_paths_and_errors(model, tmp_path):
    assert output_paths(tmp_path / "a.npy")["csv"] == tmp_path / "a.csv"
    assert output_paths(tmp_path / "b.v1")["npy"] == tmp_path / "b.v1.npy"
    with pytest.raises(FileNotFoundError, match=r"data not found: .*missing"):
        embed_to_files(model, tmp_path / "missing", tmp_path / "o")
    other = tmp_path / "table.csv"
    other.write_text("a,b\n")
    with pytest.raises(ValueError, match=r"table\.csv: cannot embed this"):
        embed_to_files(model, other, tmp_path / "o")
