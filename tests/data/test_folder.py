"""Image folders (one sub-folder per identity) and open_training_set's dispatch."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from sphereface2.data.decode import encode_jpeg
from sphereface2.data.image_folder import ImageFolderDataset, scan_image_folder
from sphereface2.data.list_file import ListFileDataset
from sphereface2.data.packing import write_recordio
from sphereface2.data.recordio_dataset import RecordIODataset
from sphereface2.data.training_sets import detect_training_set, open_training_set
from sphereface2.data.transforms import to_tensor


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def _png(path, rgb: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    with open(path, "wb") as f:
        f.write(buffer.getvalue())


def _jpeg(path, seed: int = 0) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(encode_jpeg(_noise(seed)))


def test_scan_sorted_identities_nested_files_hidden_and_other_extensions(tmp_path):
    _jpeg(tmp_path / "bob/2.jpg")
    _jpeg(tmp_path / "bob/1.JPG")
    _jpeg(tmp_path / "bob/sub/3.jpeg")
    _jpeg(tmp_path / "alice/a.png")
    _jpeg(tmp_path / "alice/.hidden.jpg")
    (tmp_path / "alice/notes.txt").write_text("not an image")
    _jpeg(tmp_path / ".trash/x.jpg")
    _jpeg(tmp_path / "loose.jpg")  # files directly under root belong to no identity
    samples, names = scan_image_folder(tmp_path)
    assert names == ["alice", "bob"]
    assert [(os.path.relpath(p, tmp_path), label) for p, label in samples] == [
        ("alice/a.png", 0),
        ("bob/1.JPG", 1),
        ("bob/2.jpg", 1),
        ("bob/sub/3.jpeg", 1),
    ]


def test_empty_identities_are_reported_and_skipped(tmp_path):
    _jpeg(tmp_path / "a/1.jpg")
    (tmp_path / "b").mkdir()
    _jpeg(tmp_path / "c/1.jpg")
    with pytest.warns(RuntimeWarning, match=r"1 identity folder\(s\) without images .*: b"):
        samples, names = scan_image_folder(tmp_path)
    assert names == ["a", "c"] and [label for _, label in samples] == [0, 1]


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image folder not found: .*nope"):
        scan_image_folder(tmp_path / "nope")
    _jpeg(tmp_path / "flat.jpg")
    with pytest.raises(ValueError, match="no identity sub-folders"):
        scan_image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="no images with extensions"):
        scan_image_folder(tmp_path)


def test_image_folder_dataset_is_lossless_for_png(tmp_path):
    pixels = {name: _noise(i) for i, name in enumerate(["x", "y"])}
    for name, rgb in pixels.items():
        _png(tmp_path / name / "0.png", rgb)
    ds = ImageFolderDataset(tmp_path)
    assert ds.class_names == ["x", "y"] and ds.num_classes == 2 and len(ds) == 2
    image, label = ds[1]
    assert label == 1
    torch.testing.assert_close(image, to_tensor(pixels["y"]), rtol=0, atol=0)


def test_dispatch_on_what_the_path_is(tmp_path):
    _jpeg(tmp_path / "folder/a/1.jpg")
    _jpeg(tmp_path / "folder/b/1.jpg")
    listed = tmp_path / "listed"
    _jpeg(listed / "images/1.jpg")
    (listed / "label.txt").write_text("images/1.jpg\t0\n")
    (tmp_path / "train.lst").write_text(f"0\t0\t{tmp_path}/folder/a/1.jpg\n")
    write_recordio(tmp_path / "rec/train", [(_noise(0), 0)])

    assert detect_training_set(tmp_path / "rec") == ("recordio", str(tmp_path / "rec"))
    assert detect_training_set(listed) == ("list", str(listed / "label.txt"))
    assert isinstance(open_training_set(tmp_path / "folder"), ImageFolderDataset)
    assert isinstance(open_training_set(tmp_path / "rec"), RecordIODataset)
    assert isinstance(open_training_set(tmp_path / "rec/train.rec"), RecordIODataset)
    # A folder holding label.txt is that list, not one identity called "images".
    ds = open_training_set(listed)
    assert isinstance(ds, ListFileDataset) and ds.num_classes == 1
    for dataset in (
        open_training_set(tmp_path / "train.lst"),
        open_training_set(tmp_path / "folder"),
    ):
        image, label = dataset[0]
        assert image.shape == (3, 16, 16) and label == 0 and dataset.labels.dtype == np.int64


def test_dispatch_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"training set not found: .*nope"):
        open_training_set(tmp_path / "nope")
    (tmp_path / "data.csv").write_text("x")
    with pytest.raises(ValueError, match=r"data\.csv: not a training set; expected a folder"):
        open_training_set(tmp_path / "data.csv")
