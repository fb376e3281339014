"""Writers: folder/list -> RecordIO -> dataset, pair list -> .bin -> pairs, and their errors."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from sphereface2.data.bin_format import read_bin
from sphereface2.data.decode import ImageDecodeError, decode_image, encode_jpeg
from sphereface2.data.packing import (
    PackOutputExistsError,
    pack_pairs,
    pack_training_set,
    write_recordio,
)
from sphereface2.data.recordio import RecordIOReader, RecordIOWriter, unpack_record
from sphereface2.data.recordio_dataset import RecordIODataset
from sphereface2.data.transforms import to_tensor


def _gradient(seed: int, size: int = 16) -> np.ndarray:
    # Smooth content keeps JPEG error small and predictable for the re-encoding tolerance.
    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([x * 12 + seed * 7, y * 12 + seed * 3, (x + y) * 6 + seed], axis=-1)
    return (rgb % 256).astype(np.uint8)


def _write(path, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def test_folder_to_rec_to_dataset(tmp_path):
    src = tmp_path / "faces"
    originals = {}
    for i, (identity, name) in enumerate([("ann", "1.jpg"), ("ann", "2.jpg"), ("ben", "1.png")]):
        rgb = _gradient(i)
        data = _png_bytes(rgb) if name.endswith(".png") else encode_jpeg(rgb, quality=80)
        _write(src / identity / name, data)
        originals[(identity, name)] = (rgb, data)
    result = pack_training_set(src, tmp_path / "out/train", quality=95)
    assert result["images"] == 3 and result["num_classes"] == 2
    assert result["copied"] == 2 and result["reencoded"] == 1
    assert result["class_names"] == ["ann", "ben"] and result["image_sizes"] == {"16x16": 3}
    assert (tmp_path / "out/property").read_text() == "2,16,16\n"

    ds = RecordIODataset(tmp_path / "out")
    np.testing.assert_array_equal(ds.labels, [0, 0, 1])
    reader = RecordIOReader(tmp_path / "out/train.rec")
    # JPEG files are stored byte for byte, so their pixels come back exactly.
    for key, original in ((1, ("ann", "1.jpg")), (2, ("ann", "2.jpg"))):
        assert unpack_record(reader.read(key))[1] == originals[original][1]
        image, _ = ds[key - 1]
        expected = to_tensor(decode_image(originals[original][1]))
        torch.testing.assert_close(image, expected, rtol=0, atol=0)
    # The PNG is re-encoded as JPEG at quality 95: close to the original pixels, not equal.
    stored = unpack_record(reader.read(3))[1]
    assert stored[:3] == b"\xff\xd8\xff"
    error = np.abs(decode_image(stored).astype(int) - originals[("ben", "1.png")][0].astype(int))
    assert error.mean() < 3.0 and error.max() <= 24
    reader.close()


def test_list_to_rec_with_root(tmp_path):
    for i in range(4):
        _write(tmp_path / f"imgs/{i}.jpg", encode_jpeg(_gradient(i)))
    (tmp_path / "train.txt").write_text("3.jpg 1\n0.jpg 0\n2.jpg 1\n1.jpg 0\n")
    result = pack_training_set(tmp_path / "train.txt", tmp_path / "train", root=tmp_path / "imgs")
    assert "class_names" not in result and result["images"] == 4
    ds = RecordIODataset(tmp_path / "train.rec")
    assert ds.class_ranges == {0: (1, 3), 1: (3, 5)}
    # Within a label the list order is kept: 0.jpg then 1.jpg, 3.jpg then 2.jpg.
    for i, name in enumerate(["0", "1", "3", "2"]):
        expected = to_tensor(decode_image((tmp_path / f"imgs/{name}.jpg").read_bytes()))
        torch.testing.assert_close(ds[i][0], expected, rtol=0, atol=0)


def test_write_recordio_arrays_bytes_and_options(tmp_path):
    arrays = [_gradient(i) for i in range(3)]
    png = _png_bytes(_gradient(9))
    samples = [(arrays[0], 1), (png, 0), (arrays[1], 1), (encode_jpeg(arrays[2]), 0)]
    result = write_recordio(tmp_path / "a/train", samples, quality=90)
    assert result["reencoded"] == 3 and result["copied"] == 1  # arrays and the PNG are encoded
    reader = RecordIOReader(tmp_path / "a/train.rec")
    assert all(unpack_record(reader.read(k))[1][:3] == b"\xff\xd8\xff" for k in range(1, 5))

    # encode=False keeps encoded bytes as they are (a PNG record stays PNG) and refuses arrays.
    result = write_recordio(tmp_path / "b/train", [(png, 0)], encode=False)
    assert result["copied"] == 1
    assert unpack_record(RecordIOReader(tmp_path / "b/train.rec").read(1))[1] == png
    with pytest.raises(ValueError, match="sample 0: got a pixel array but encode=False"):
        write_recordio(tmp_path / "c/train", [(arrays[0], 0)], encode=False)


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([(np.zeros((4, 4, 3), np.uint8), -1)], "sample 0: negative label -1"),
        ([(np.zeros((4, 4, 3), np.uint8), 1.0)], r"sample 0: label must be an int, got 1\.0"),
        ([(np.zeros((4, 4, 3), np.uint8), 2**24)], "cannot be stored exactly"),
        ([(np.zeros((4, 4), np.uint8), 0)], r"sample 0: expected RGB uint8 \(H, W, 3\)"),
        ([(b"not an image", 0)], "sample 0: cannot decode image"),
        ([("a.jpg", 0)], "sample 0: expected an RGB array or encoded bytes, got str"),
        ([], "no samples to write"),
    ],
)
def test_write_recordio_errors(tmp_path, samples, message):
    with pytest.raises(ValueError, match=message):
        write_recordio(tmp_path / "train", samples)
    assert not (tmp_path / "train.rec").exists()


def test_pack_missing_and_corrupt_images_name_the_file(tmp_path):
    (tmp_path / "train.txt").write_text("missing.jpg 0\n")
    with pytest.raises(FileNotFoundError, match=r"missing\.jpg: cannot read image"):
        pack_training_set(tmp_path / "train.txt", tmp_path / "out/train")
    _write(tmp_path / "bad.png", b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "train.txt").write_text("bad.png 0\n")
    with pytest.raises(ImageDecodeError, match=r"bad\.png: cannot decode image"):
        pack_training_set(tmp_path / "train.txt", tmp_path / "out/train")
    with pytest.raises(ValueError, match="is already a RecordIO training set"):
        write_recordio(tmp_path / "rec/train", [(_gradient(0), 0)])
        pack_training_set(tmp_path / "rec", tmp_path / "again/train")


def test_progress_log(tmp_path, monkeypatch):
    import sphereface2.data.packing as packing

    monkeypatch.setattr(packing, "_LOG_EVERY", 2)
    for i in range(4):
        _write(tmp_path / f"src/a/{i}.jpg", encode_jpeg(_gradient(i)))
    lines: list[str] = []
    pack_training_set(tmp_path / "src", tmp_path / "train", log=lines.append)
    assert len(lines) == 2 and lines[1].startswith("read: 4/4 (")


def test_pairs_to_bin_to_pairs(tmp_path):
    files = {}
    for i, name in enumerate(["a/1.jpg", "a/2.jpg", "b/1.jpg", "c/1.png"]):
        data = _png_bytes(_gradient(i)) if name.endswith(".png") else encode_jpeg(_gradient(i))
        _write(tmp_path / "img" / name, data)
        files[name] = data
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1 a/1.jpg a/2.jpg\n0 a/1.jpg b/1.jpg\n0 b/1.jpg c/1.png\n")
    for variant in ("numpy", "bytes"):
        out = tmp_path / f"val_{variant}.bin"
        result = pack_pairs(pairs, out, root=tmp_path / "img", variant=variant)
        assert result == {
            "bin": str(out),
            "pairs": 3,
            "genuine": 1,
            "impostor": 2,
            "unique_images": 4,
            "reencoded": 1,
        }
        content = read_bin(out)
        assert content.issame.tolist() == [True, False, False]
        order = ["a/1.jpg", "a/2.jpg", "a/1.jpg", "b/1.jpg", "b/1.jpg"]
        assert content.images[:5] == [files[name] for name in order]  # JPEGs byte for byte
        png_as_jpeg = decode_image(content.images[5]).astype(int)
        assert np.abs(png_as_jpeg - _gradient(3).astype(int)).mean() < 3.0


def test_pack_pairs_missing_image_names_the_line(tmp_path):
    _write(tmp_path / "a.jpg", encode_jpeg(_gradient(0)))
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1 a.jpg a.jpg\n\n0 a.jpg gone.jpg\n")
    with pytest.raises(FileNotFoundError, match=r"gone\.jpg \(pair on line 3 of .*pairs\.txt\)"):
        pack_pairs(pairs, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def _faces(root, names=("ann/1.jpg", "ann/2.jpg", "ben/1.jpg", "cat/1.jpg")) -> None:
    for i, name in enumerate(names):
        _write(root / name, encode_jpeg(_gradient(i, size=32)))


def test_truncated_jpeg_stops_the_pack_and_nothing_is_written(tmp_path):
    _faces(tmp_path / "src")
    whole = (tmp_path / "src/ben/1.jpg").read_bytes()
    (tmp_path / "src/ben/1.jpg").write_bytes(whole[: len(whole) // 2])  # header still valid
    with pytest.raises(ImageDecodeError, match=r"src/ben/1\.jpg: cannot decode image"):
        pack_training_set(tmp_path / "src", tmp_path / "out/train")
    assert not (tmp_path / "out").exists()  # the folder it made is gone again, and no temps


def test_skip_corrupt_leaves_out_and_counts_bad_images(tmp_path):
    _faces(tmp_path / "src")
    whole = (tmp_path / "src/ann/2.jpg").read_bytes()
    (tmp_path / "src/ann/2.jpg").write_bytes(whole[:-60])
    (tmp_path / "src/cat/1.jpg").write_bytes(b"<html>404</html>")
    lines: list[str] = []
    with pytest.warns(RuntimeWarning, match="1 label"):  # cat (label 2) has no image left
        result = pack_training_set(
            tmp_path / "src", tmp_path / "out/train", skip_corrupt=True, log=lines.append
        )
    assert result["images"] == 2 and result["skipped"] == 2
    assert result["num_classes"] == 3 and result["class_names"] == ["ann", "ben", "cat"]
    assert [m.split(":")[0] for m in result["skipped_images"]] == [
        str(tmp_path / "src/ann/2.jpg"),
        str(tmp_path / "src/cat/1.jpg"),
    ]
    assert lines == [f"skipped: {m}" for m in result["skipped_images"]]
    ds = RecordIODataset(tmp_path / "out")
    assert ds.labels.tolist() == [0, 1] and ds.num_classes == 3
    expected = to_tensor(decode_image((tmp_path / "src/ben/1.jpg").read_bytes()))
    torch.testing.assert_close(ds[1][0], expected, rtol=0, atol=0)


def test_existing_set_is_refused_unless_overwrite(tmp_path):
    _faces(tmp_path / "src")
    first = pack_training_set(tmp_path / "src", tmp_path / "out/train")
    with pytest.raises(PackOutputExistsError, match=r"out already holds a training set \("):
        pack_training_set(tmp_path / "src", tmp_path / "out/train")
    # Another prefix in the same folder would overwrite the shared 'property'.
    with pytest.raises(PackOutputExistsError, match=r"\(property\); pass --overwrite"):
        pack_training_set(tmp_path / "src", tmp_path / "out/other")
    (tmp_path / "src/ann/2.jpg").unlink()
    second = pack_training_set(tmp_path / "src", tmp_path / "out/train", overwrite=True)
    assert (first["images"], second["images"]) == (4, 3)
    assert len(RecordIODataset(tmp_path / "out")) == 3


def test_a_failed_write_leaves_no_temp_files_and_keeps_the_old_set(tmp_path, monkeypatch):
    write_recordio(tmp_path / "out/train", [(_gradient(i), i % 2) for i in range(4)])
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    writes = iter(range(3))

    def failing_write(self, key, payload):
        if next(writes, None) is None:  # the 4th record: the .rec/.idx temps hold three
            raise OSError(28, "No space left on device")
        return original_write(self, key, payload)

    original_write = RecordIOWriter.write
    monkeypatch.setattr(RecordIOWriter, "write", failing_write)
    with pytest.raises(OSError, match="No space left"):
        write_recordio(tmp_path / "out/train", [(_gradient(i), 0) for i in range(5)])
    after = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert after == before  # no .tmp files, and the earlier set untouched


def test_pack_pairs_decodes_every_image(tmp_path):
    jpeg = encode_jpeg(_gradient(0, size=32))
    _write(tmp_path / "a.jpg", jpeg)
    _write(tmp_path / "cut.jpg", jpeg[: len(jpeg) // 2])
    (tmp_path / "pairs.txt").write_text("1 a.jpg a.jpg\n0 a.jpg cut.jpg\n")
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg \(pair on line 2 of .*truncated"):
        pack_pairs(tmp_path / "pairs.txt", tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()
