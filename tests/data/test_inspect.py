"""inspect_path: one summary for every supported kind of path, with decode checks."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from sphereface2.data.bin_format import write_bin
from sphereface2.data.decode import encode_jpeg
from sphereface2.data.inspect import format_inspection, inspect_path
from sphereface2.data.packing import write_recordio
from sphereface2.data.recordio import IRHeader, RecordIOWriter, pack_record


def _jpeg(seed: int, size: tuple[int, int] = (16, 16)) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_jpeg(rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def _file(path, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def test_recordio_summary(tmp_path):
    write_recordio(tmp_path / "train", [(_jpeg(i), label) for i, label in enumerate([0, 0, 0, 1])])
    info = inspect_path(tmp_path, samples=3)
    assert info["kind"] == "recordio" and info["layout"] == "ms1m (meta record)"
    assert info["images"] == 4 and info["records"] == 7 and info["num_classes"] == 2
    assert info["identities"] == 2 and info["label_range"] == [0, 1]
    assert info["images_per_identity"] == {"min": 1, "mean": 2.0, "max": 3}
    assert info["property"] == [16, 16]
    assert info["checked"] == 3 and info["failed"] == [] and info["image_sizes"] == {"16x16": 3}
    json.dumps(info)  # JSON-ready
    text = format_inspection(info)
    assert "layout: ms1m (meta record)" in text and "all 3 sampled images decode" in text


def test_bin_summary_reports_undecodable_images(tmp_path):
    images = [_jpeg(0), _jpeg(1, (20, 12)), _jpeg(2), b"\xff\xd8\xff broken"]
    write_bin(tmp_path / "val.bin", images, [True, False])
    info = inspect_path(tmp_path / "val.bin", samples=10)
    assert info["kind"] == "bin" and info["pairs"] == 2 and info["genuine"] == 1
    assert info["impostor"] == 1 and info["images"] == 4 and info["checked"] == 4
    assert info["image_sizes"] == {"16x16": 2, "20x12": 1}
    assert len(info["failed"]) == 1 and "val.bin image 3" in info["failed"][0]
    assert "FAILED to decode 1 of 4 sampled images" in format_inspection(info)


def test_folder_list_and_pair_list(tmp_path):
    for identity, count in (("a", 2), ("b", 1)):
        for i in range(count):
            _file(tmp_path / f"faces/{identity}/{i}.jpg", _jpeg(i))
    info = inspect_path(tmp_path / "faces", samples=2)
    assert info["kind"] == "image folder" and info["images"] == 3 and info["identities"] == 2
    assert info["first_identities"] == ["a", "b"] and info["checked"] == 2

    (tmp_path / "faces/train.txt").write_text("a/0.jpg 0\nb/0.jpg 3\n")
    info = inspect_path(tmp_path / "faces/train.txt", samples=0)
    assert info["kind"] == "list" and info["identities"] == 2 and info["label_range"] == [0, 3]
    assert info["checked"] == 0 and "sampled" not in format_inspection(info)

    (tmp_path / "faces/pairs.txt").write_text("1 a/0.jpg a/1.jpg\n0 a/0.jpg b/0.jpg\n")
    info = inspect_path(tmp_path / "faces/pairs.txt")
    assert info["kind"] == "pair list" and info["pairs"] == 2 and info["images"] == 3
    assert info["genuine"] == 1 and info["checked"] == 3 and info["failed"] == []


def test_plain_recordio_with_a_broken_record(tmp_path):
    with RecordIOWriter(tmp_path / "x.rec", tmp_path / "x.idx") as writer:
        writer.write(0, pack_record(IRHeader(0, 0.0), _jpeg(0)))
        writer.write(1, pack_record(IRHeader(0, 1.0), b""))
    info = inspect_path(tmp_path / "x.rec", samples=2)
    assert info["layout"] == "plain image list" and info["property"] is None
    assert info["failed"] == [f"{tmp_path / 'x.rec'} record 1: empty image data"]


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file or folder: .*nope"):
        inspect_path(tmp_path / "nope")
    (tmp_path / "bad.txt").write_text("a.jpg -2\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1: negative label"):
        inspect_path(tmp_path / "bad.txt")
    with pytest.raises(ValueError, match="samples must be >= 0"):
        inspect_path(tmp_path / "bad.txt", samples=-1)


def _ms1m_with_wrong_header(path, wrong_key: int, wrong_label: float) -> None:
    """An MS1M-layout set: identities 0, 1, 2 with 3 images each; one header lies."""
    with RecordIOWriter(path.with_suffix(".rec"), path.with_suffix(".idx")) as writer:
        writer.write(0, pack_record(IRHeader(2, (10.0, 13.0))))
        for key in range(1, 10):
            label = wrong_label if key == wrong_key else float((key - 1) // 3)
            writer.write(key, pack_record(IRHeader(0, label, key), _jpeg(key)))
        for identity in range(3):
            span = (1.0 + 3 * identity, 4.0 + 3 * identity)
            writer.write(10 + identity, pack_record(IRHeader(2, span, 10 + identity)))


def test_every_recordio_header_label_is_checked(tmp_path):
    # Key 5 is the middle image of identity 1: the dataset's spot check only reads the
    # first image of each identity, so only a full pass over the headers finds it.
    _ms1m_with_wrong_header(tmp_path / "train", wrong_key=5, wrong_label=2.0)
    info = inspect_path(tmp_path, samples=1)
    assert info["labels_checked"] == 9 and info["problem_count"] == 1
    assert info["problems"] == [
        f"{tmp_path / 'train.rec'} record 5: header label 2 disagrees with identity record 11 "
        f"(identity 1)"
    ]
    assert info["identities"] == 3 and info["images_per_identity"]["max"] == 3
    text = format_inspection(info)
    assert "PROBLEMS: 1" in text and "record 5: header label 2" in text
    quick = inspect_path(tmp_path, samples=1, check_labels=False)
    assert quick["labels_checked"] == 0 and quick["problem_count"] == 0


def test_plain_recordio_label_problems_are_all_collected(tmp_path):
    with RecordIOWriter(tmp_path / "x.rec", tmp_path / "x.idx") as writer:
        for key, label in enumerate([0.0, 1.5, 1.0, 7.0, -1.0]):
            writer.write(key, pack_record(IRHeader(0, label), _jpeg(key)))
    (tmp_path / "property").write_text("2,16,16\n")
    lines: list[str] = []
    info = inspect_path(tmp_path / "x.rec", samples=0, log=lines.append)
    assert info["problem_count"] == 3 and info["labels_checked"] == 5
    rec = tmp_path / "x.rec"
    assert info["problems"] == [
        f"{rec} record 1: label 1.5 is not a class index (integer >= 0)",
        f"{rec} record 3: label 7 is out of range for the 2 classes of {tmp_path / 'property'}",
        f"{rec} record 4: label -1.0 is not a class index (integer >= 0)",
    ]
    assert info["identities"] == 2 and info["label_range"] == [0, 1]


def _lfw(tmp_path, present: list[str]) -> None:
    (tmp_path / "pairs.txt").write_text("1 1\nAnn 1 2\nAnn 1 Bob 1\n")
    for name in present:
        _file(tmp_path / f"lfw/{name}", _jpeg(len(name)))


def test_lfw_pairs_with_root_and_missing_images(tmp_path):
    _lfw(tmp_path, ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg"])
    info = inspect_path(tmp_path / "pairs.txt", samples=5, lfw_root=tmp_path / "lfw")
    assert info["kind"] == "lfw pairs" and info["pairs"] == 2 and info["folds"] == 1
    assert info["genuine"] == 1 and info["images"] == 3 and info["checked"] == 3
    assert info["problems"] == [f"{tmp_path / 'lfw/Bob/Bob_0001.jpg'}: no such image file"]
    assert len(info["failed"]) == 1
    with pytest.raises(
        ValueError, match=r"pairs\.txt: looks like LFW's pairs\.txt; pass --lfw-root"
    ):
        inspect_path(tmp_path / "pairs.txt")


def test_named_list_summary(tmp_path):
    for name in ("n2/a.jpg", "n1/b.jpg", "n1/c.jpg"):
        _file(tmp_path / name, _jpeg(1))
    (tmp_path / "train.txt").write_text("n2/a.jpg n2\nn1/b.jpg n1\nn1/c.jpg n1\n")
    info = inspect_path(tmp_path / "train.txt", samples=3)
    assert info["kind"] == "list" and info["labels_checked"] == 3
    assert info["first_identities"] == ["n1", "n2"] and info["images_per_identity"]["max"] == 2
    assert info["problem_count"] == 0 and info["failed"] == []
