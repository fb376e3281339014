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
