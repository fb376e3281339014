"""Training list files: the accepted line forms, their errors, and ListFileDataset."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from sphereface2.data.decode import ImageDecodeError, encode_jpeg, read_image
from sphereface2.data.label_noise import NoisyLabelDataset
from sphereface2.data.list_file import (
    ListFileDataset,
    ListFileError,
    read_list_file,
    read_training_list,
)
from sphereface2.data.training_sets import open_training_set
from sphereface2.data.transforms import to_tensor


def _jpeg_file(path, seed: int = 0) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(encode_jpeg(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)))


def _list(tmp_path, text: str, name: str = "train.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_path_label_lines_spaces_tabs_comments(tmp_path):
    path = _list(tmp_path, "# header\n\na/1.jpg 3\nb/2.jpg\t0\r\nc d/3.jpg\t1\n")
    assert read_list_file(path) == [
        (str(tmp_path / "a/1.jpg"), 3),
        (str(tmp_path / "b/2.jpg"), 0),
        (str(tmp_path / "c d/3.jpg"), 1),  # a tab-separated line may have spaces in its path
    ]


def test_root_and_absolute_paths(tmp_path):
    path = _list(tmp_path, f"x.jpg 0\n{tmp_path}/abs.jpg 1\n")
    assert read_list_file(path, root="/data") == [
        ("/data/x.jpg", 0),
        (str(tmp_path / "abs.jpg"), 1),
    ]


def test_path_only_lines_take_labels_from_sorted_folder_names(tmp_path):
    path = _list(tmp_path, "zoe/1.jpg\nadam/1.jpg\nzoe/2.jpg\nmia/1.jpg\n")
    assert [label for _, label in read_list_file(path)] == [2, 0, 2, 1]


def test_mxnet_lst(tmp_path):
    path = _list(tmp_path, "0\t1.000000\tman/a.jpg\n1\t0.000000\t7.0\twoman/b c.jpg\n", "x.lst")
    assert read_list_file(path) == [
        (str(tmp_path / "man/a.jpg"), 1),
        (str(tmp_path / "woman/b c.jpg"), 0),  # first of several labels
    ]
    _list(tmp_path, "0\tman/a.jpg\n", "short.lst")
    with pytest.raises(ListFileError, match=r"short\.lst:1: an MXNet \.lst line needs"):
        read_list_file(tmp_path / "short.lst")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.jpg 0\nb.jpg 1 2\n", r"train\.txt:2: too many fields \(3\)"),
        ("a.jpg 0\nb.jpg -1\n", r"train\.txt:2: negative label '-1'"),
        ("a.jpg 99999999999\n", r"train\.txt:1: label '99999999999' is out of range"),
        (
            "a.jpg 0\nb.jpg cat\n",
            r"train\.txt:2: the identity name 'cat' but line 1 has the integer label '0'",
        ),
        (
            "x/a.jpg n01\nx/b.jpg 1.5\n",
            r"train\.txt:2: the integer label '1\.5' but line 1 has the identity name 'n01'",
        ),
        ("a.jpg 1.5\n", r"train\.txt:1: label must be an integer, got '1\.5'"),
        ("x/a.jpg 0\nx/b.jpg\n", r"train\.txt:2: 1 field\(s\) but line 1 has 2"),
        ("a.jpg\n", r"train\.txt:1: no label and no parent folder"),
        ("# only a comment\n\n", r"train\.txt: no samples found"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, text, message):
    path = _list(tmp_path, text)
    with pytest.raises(ListFileError, match=message):
        read_list_file(path)


def test_identity_names_map_to_labels_in_sorted_order(tmp_path):
    # OpenSphere's VGGFace2 annotation form: 'path name', names not in sorted order.
    path = _list(
        tmp_path,
        "n000009/0001_01.jpg n000009\nn000002/0001_01.jpg n000002\n"
        "n000002/0002_01.jpg n000002\nx/tab name.jpg\tn000005 \n",
    )
    samples, class_names = read_training_list(path)
    assert class_names == ["n000002", "n000005", "n000009"]
    assert samples == [
        (str(tmp_path / "n000009/0001_01.jpg"), 2),
        (str(tmp_path / "n000002/0001_01.jpg"), 0),
        (str(tmp_path / "n000002/0002_01.jpg"), 0),
        (str(tmp_path / "x/tab name.jpg"), 1),
    ]
    # Integer labels stay integer labels (no names), even written with leading zeros.
    numeric = _list(tmp_path, "a.jpg 007\nb.jpg 2\n", "numeric.txt")
    assert read_training_list(numeric) == (
        [(str(tmp_path / "a.jpg"), 7), (str(tmp_path / "b.jpg"), 2)],
        None,
    )
    # Folder-labelled lists name their identities too.
    folders = _list(tmp_path, "zoe/1.jpg\nadam/1.jpg\n", "folders.txt")
    assert read_training_list(folders)[1] == ["adam", "zoe"]


def test_list_dataset_exposes_class_names(tmp_path):
    _jpeg_file(tmp_path / "n2/a.jpg")
    _jpeg_file(tmp_path / "n1/b.jpg", seed=1)
    ds = ListFileDataset(_list(tmp_path, "n2/a.jpg n2\nn1/b.jpg n1\n"))
    assert ds.class_names == ["n1", "n2"] and ds.labels.tolist() == [1, 0]
    assert ds.num_classes == 2 and ds[0][1] == 1
    assert ListFileDataset(_list(tmp_path, "n2/a.jpg 0\n", "num.txt")).class_names is None
    # What the trainer opens, with and without label noise, carries the names.
    opened = open_training_set(tmp_path / "train.txt")
    assert opened.class_names == ["n1", "n2"]
    assert NoisyLabelDataset(opened, 0.5, None, seed=0).class_names == ["n1", "n2"]


def test_non_utf8_list_names_file_and_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes("a.jpg 0\nb\u00e9.jpg 1\n".encode("latin-1"))
    with pytest.raises(
        ListFileError, match=r"train\.txt:2: not UTF-8 text \(byte b'\\xe9' at column 2\)"
    ):
        read_list_file(path)
    # A byte-order mark is not part of the first path.
    path.write_bytes("\ufeffa.jpg 0\n".encode())
    assert read_list_file(path) == [(str(tmp_path / "a.jpg"), 0)]


def test_missing_list(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"list file not found: .*nope\.txt"):
        read_list_file(tmp_path / "nope.txt")


def test_list_dataset_items(tmp_path):
    for i in range(3):
        _jpeg_file(tmp_path / f"img/{i}.jpg", seed=i)
    path = _list(tmp_path, "img/0.jpg 1\nimg/1.jpg 0\nimg/2.jpg 4\n")
    ds = ListFileDataset(path)
    assert len(ds) == 3 and ds.num_classes == 5
    np.testing.assert_array_equal(ds.labels, [1, 0, 4])
    image, label = ds[2]
    assert label == 4
    torch.testing.assert_close(image, to_tensor(read_image(str(tmp_path / "img/2.jpg"))))
    assert ds[-1][1] == 4
    with pytest.raises(IndexError):
        ds[3]


def test_corrupt_empty_and_missing_images(tmp_path):
    _jpeg_file(tmp_path / "good.jpg")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x13" * 50)
    (tmp_path / "empty.jpg").write_bytes(b"")
    path = _list(tmp_path, "corrupt.jpg 0\nempty.jpg 0\nmissing.jpg 0\ngood.jpg 1\n")
    ds = ListFileDataset(path)
    with pytest.raises(ImageDecodeError, match=r"corrupt\.jpg: cannot decode image"):
        ds[0]
    with pytest.raises(ImageDecodeError, match=r"empty\.jpg: empty image data"):
        ds[1]
    with pytest.raises(ImageDecodeError, match=r"missing\.jpg: cannot read image file"):
        ds[2]

    skipping = ListFileDataset(path, skip_corrupt=True)
    with pytest.warns(RuntimeWarning, match="skipping corrupt sample"):
        image, label = skipping[0]
    assert label == 1  # replaced by the next good sample, good.jpg
    assert len(skipping.corrupt_samples) == 3
    assert "corrupt.jpg" in skipping.corrupt_samples[0]
    assert "missing.jpg" in skipping.corrupt_samples[2]
