"""Readers against real files written by InsightFace's and MXNet's tools (../shared/fixtures)."""

from __future__ import annotations

import numpy as np

from sphereface2.data.bin_format import BinPairDataset, read_bin, write_bin
from sphereface2.data.decode import decode_image
from sphereface2.data.list_file import ListFileDataset, read_list_file
from sphereface2.data.recordio import RecordIOReader, RecordIOWriter, unpack_record
from sphereface2.data.recordio_dataset import RecordIODataset
from sphereface2.data.training_sets import open_training_set


def test_small_lfw_bin(shared_fixtures):
    path = shared_fixtures / "insightface-ci/small_lfw.bin"
    content = read_bin(path)
    assert len(content.images) == 20 and len(content) == 10
    assert content.issame.tolist() == [True] * 10
    assert all(image[:3] == b"\xff\xd8\xff" for image in content.images)
    ds = BinPairDataset(path)
    image, index = ds[19]
    assert image.shape == (3, 112, 112) and index == 19
    assert all(decode_image(b).shape == (112, 112, 3) for b in content.images)


def test_small_lfw_bin_rewritten_in_both_variants(shared_fixtures, tmp_path):
    content = read_bin(shared_fixtures / "insightface-ci/small_lfw.bin")
    for variant in ("numpy", "bytes"):
        write_bin(tmp_path / "copy.bin", content.images, content.issame, variant=variant)
        again = read_bin(tmp_path / "copy.bin")
        assert again.images == content.images and again.issame.tolist() == [True] * 10


def test_insightface_small_dataset_label_txt(shared_fixtures):
    folder = shared_fixtures / "insightface-ci/small_dataset"
    samples = read_list_file(folder / "label.txt")  # tab-separated, no final newline
    names = [
        "00000001", "00000111", "00000130", "00000213", "00000228",
        "00000303", "00000385", "00000488", "00000576", "00000672",
    ]  # fmt: skip
    assert samples == [(str(folder / f"images/{n}.jpg"), i) for i, n in enumerate(names)]
    ds = open_training_set(folder)  # the folder holding label.txt
    assert isinstance(ds, ListFileDataset) and ds.num_classes == 10
    np.testing.assert_array_equal(ds.labels, np.arange(10))
    image, label = ds[9]
    assert image.shape == (3, 112, 112) and label == 9


def _lst_labels(path) -> dict[int, int]:
    labels = {}
    for line in path.read_text().splitlines():
        index, label, _ = line.split("\t")
        labels[int(index)] = int(float(label))
    return labels


def test_mxnet_im2rec_plain_list(shared_fixtures):
    folder = shared_fixtures / "mxnet-im2rec"
    expected = _lst_labels(folder / "train.lst")
    reader = RecordIOReader(folder / "train.rec")
    assert sorted(reader.keys) == list(range(8)) and reader.keys != sorted(reader.keys)
    for key in reader.keys:
        header, image = unpack_record(reader.read(key))
        assert header.flag == 0 and header.label == expected[key] and header.id == key
        assert decode_image(image).shape == (112, 112, 3)

    ds = RecordIODataset(folder)
    assert ds.meta is None and len(ds) == 8 and ds.num_classes == 2
    assert ds.labels.tolist() == [expected[k] for k in ds.keys.tolist()]
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (3, 112, 112) and label == expected[int(ds.keys[i])]


def test_mxnet_lst_reads_labels_and_paths(shared_fixtures):
    folder = shared_fixtures / "mxnet-im2rec"
    samples = read_list_file(folder / "train.lst")
    assert samples[0] == (str(folder / "man/man_1.jpg"), 0)
    assert [label for _, label in samples] == [0, 1, 1, 1, 0, 1, 0, 0]


def test_im2rec_records_rewritten_byte_for_byte(shared_fixtures, tmp_path):
    # Our writer reproduces MXNet's on-disk bytes for the same payloads and order.
    source = shared_fixtures / "mxnet-im2rec/train.rec"
    reader = RecordIOReader(source)
    with RecordIOWriter(tmp_path / "copy.rec", tmp_path / "copy.idx") as writer:
        for key in reader.keys:
            writer.write(key, reader.read(key))
    assert (tmp_path / "copy.rec").read_bytes() == source.read_bytes()
    assert (tmp_path / "copy.idx").read_text() == source.with_suffix(".idx").read_text()
