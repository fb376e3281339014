"""RecordIODataset: MS1M layout, plain lists, labels from headers only, workers, corrupt records."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from sphereface2.data.decode import ImageDecodeError, decode_image, encode_jpeg
from sphereface2.data.packing import write_recordio
from sphereface2.data.recordio import IRHeader, RecordIOError, RecordIOWriter, pack_record
from sphereface2.data.recordio_dataset import RecordIODataset
from sphereface2.data.transforms import to_tensor


def _jpeg(seed: int, size: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_jpeg(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), quality=90)


def _plain(tmp_path, records, name="train"):
    """A plain image list (no meta record); ``records`` is [(key, label, image_bytes)]."""
    with RecordIOWriter(tmp_path / f"{name}.rec", tmp_path / f"{name}.idx") as writer:
        for key, label, image in records:
            writer.write(key, pack_record(IRHeader(0, label, key), image))
    return tmp_path / f"{name}.rec"


def test_ms1m_layout_labels_ranges_and_exact_pixels(tmp_path):
    labels = [2, 0, 1, 2, 0, 4, 1]
    images = [_jpeg(i) for i in range(len(labels))]
    with pytest.warns(RuntimeWarning, match=r"1 label\(s\) in 0\.\.4 have no images"):
        counts = write_recordio(tmp_path / "train", zip(images, labels))
    assert counts["images"] == 7 and counts["num_classes"] == 5 and counts["empty_classes"] == 1
    assert counts["copied"] == 7 and counts["reencoded"] == 0
    assert (tmp_path / "property").read_text() == "5,16,16\n"

    ds = RecordIODataset(tmp_path)  # the folder form
    assert len(ds) == 7 and ds.num_classes == 5 and ds.image_size == (16, 16)
    assert ds.class_names is None  # integer labels only, like every RecordIO set
    assert ds.meta == (8, 13)
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 2, 2, 4])
    assert ds.class_ranges == {0: (1, 3), 1: (3, 5), 2: (5, 7), 3: (7, 7), 4: (7, 8)}
    # Images are grouped by label, keeping input order within a label; JPEG bytes are
    # stored unchanged, so decoded pixels match decoding the original bytes exactly.
    order = [1, 4, 2, 6, 0, 3, 5]
    for i, source in enumerate(order):
        image, label = ds[i]
        assert label == labels[source]
        torch.testing.assert_close(image, to_tensor(decode_image(images[source])), rtol=0, atol=0)


def test_labels_come_from_headers_without_decoding(tmp_path, monkeypatch):
    write_recordio(tmp_path / "train", [(_jpeg(i), i % 3) for i in range(6)])
    import sphereface2.data.recordio_dataset as module

    def fail(*args, **kwargs):
        raise AssertionError("labels must not decode images")

    monkeypatch.setattr(module, "decode_image", fail)
    ds = RecordIODataset(tmp_path / "train.rec")
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 2, 2])


def test_plain_list_unsorted_keys_and_label_arrays(tmp_path):
    images = {k: _jpeg(k) for k in range(5)}
    with RecordIOWriter(tmp_path / "train.rec", tmp_path / "train.idx") as writer:
        for key in (3, 0, 4, 1, 2):
            # A label array (flag 2) on an image record: the first value is the class.
            label = (float(key % 2), 99.0) if key in (1, 4) else float(key % 2)
            writer.write(key, pack_record(IRHeader(0, label, key), images[key]))
    ds = RecordIODataset(tmp_path / "train.rec")
    assert ds.meta is None and ds.class_ranges is None and ds.image_size is None
    np.testing.assert_array_equal(ds.keys, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(ds.labels, [0, 1, 0, 1, 0])
    assert ds.num_classes == 2
    for i in range(5):
        image, label = ds[i]
        assert label == i % 2
        torch.testing.assert_close(image, to_tensor(decode_image(images[i])), rtol=0, atol=0)


def test_property_cross_checked(tmp_path):
    write_recordio(tmp_path / "train", [(_jpeg(i), i) for i in range(3)])
    (tmp_path / "property").write_text("4,112,112")
    with pytest.raises(ValueError, match=r"property says 4 classes but the meta record .* says 3"):
        RecordIODataset(tmp_path)
    (tmp_path / "property").write_text("3;112;112")
    with pytest.raises(ValueError, match=r"property: expected 'num_classes,height,width'"):
        RecordIODataset(tmp_path)
    # Plain list: a label beyond the property's class count is an error naming the record.
    plain = tmp_path / "plain"
    plain.mkdir()
    _plain(plain, [(0, 0.0, _jpeg(0)), (1, 5.0, _jpeg(1))])
    (plain / "property").write_text("2,16,16")
    ds = RecordIODataset(plain)
    assert ds.num_classes == 2
    with pytest.raises(ValueError, match=r"train\.rec record 1: label 5 is out of range"):
        _ = ds.labels


def test_non_integer_label_names_the_record(tmp_path):
    rec = _plain(tmp_path, [(0, 0.0, _jpeg(0)), (1, 1.5, _jpeg(1))])
    with pytest.raises(RecordIOError, match=r"train\.rec record 1: label 1\.5 is not a class"):
        _ = RecordIODataset(rec).labels


def test_identity_records_must_agree_with_image_headers(tmp_path):
    with RecordIOWriter(tmp_path / "train.rec", tmp_path / "train.idx") as writer:
        writer.write(0, pack_record(IRHeader(2, (3.0, 5.0))))
        writer.write(1, pack_record(IRHeader(0, 1.0, 1), _jpeg(1)))  # says class 1 ...
        writer.write(2, pack_record(IRHeader(0, 1.0, 2), _jpeg(2)))
        writer.write(3, pack_record(IRHeader(2, (1.0, 2.0), 3)))  # ... identity 0 owns key 1
        writer.write(4, pack_record(IRHeader(2, (2.0, 3.0), 4)))
    with pytest.raises(RecordIOError, match=r"record 1: header label 1 disagrees with identity"):
        _ = RecordIODataset(tmp_path).labels


def test_meta_record_announcing_missing_keys(tmp_path):
    with RecordIOWriter(tmp_path / "train.rec", tmp_path / "train.idx") as writer:
        writer.write(0, pack_record(IRHeader(2, (3.0, 5.0))))
        writer.write(1, pack_record(IRHeader(0, 0.0, 1), _jpeg(1)))
    with pytest.raises(RecordIOError, match=r"3 image and identity key\(s\) .* missing, first 2"):
        RecordIODataset(tmp_path)


def test_missing_path_and_folder_without_rec(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"RecordIO file or folder not found: .*nope"):
        RecordIODataset(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"folder has no train\.rec"):
        RecordIODataset(tmp_path)


def test_corrupt_and_empty_images_name_the_record(tmp_path):
    good = _jpeg(0)
    corrupt = good[:30] + b"\x00" * 40  # a JPEG header followed by garbage
    rec = _plain(tmp_path, [(0, 0.0, good), (1, 0.0, corrupt), (2, 1.0, b""), (3, 1.0, good)])
    ds = RecordIODataset(rec)
    with pytest.raises(ImageDecodeError, match=r"train\.rec record 1: cannot decode image"):
        ds[1]
    with pytest.raises(ImageDecodeError, match=r"train\.rec record 2: empty image data"):
        ds[2]


def test_skip_corrupt_replaces_counts_and_reports(tmp_path):
    good = [_jpeg(i) for i in range(2)]
    rec = _plain(tmp_path, [(0, 0.0, good[0]), (1, 0.0, b"junk"), (2, 1.0, b""), (3, 1.0, good[1])])
    ds = RecordIODataset(rec, skip_corrupt=True)
    with pytest.warns(RuntimeWarning) as caught:
        image, label = ds[1]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert messages[0].startswith("skipping corrupt sample: ") and "record 1" in messages[0]
    assert messages[1].endswith("train.rec record 2: empty image data")
    # Records 1 and 2 are bad: the next good one (record 3) replaces record 1, deterministically.
    torch.testing.assert_close(image, to_tensor(decode_image(good[1])), rtol=0, atol=0)
    assert label == 1
    assert len(ds.corrupt_samples) == 2
    assert "record 1" in ds.corrupt_samples[0] and "record 2" in ds.corrupt_samples[1]
    image2, _ = ds[2]  # already known bad: no new warning, same substitute
    torch.testing.assert_close(image2, image, rtol=0, atol=0)
    assert len(ds.corrupt_samples) == 2


def test_skip_corrupt_gives_up_when_everything_is_bad(tmp_path):
    rec = _plain(tmp_path, [(0, 0.0, b"bad"), (1, 0.0, b"worse")])
    ds = RecordIODataset(rec, skip_corrupt=True)
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="all 2 samples failed"):
        ds[0]


class _WithPid(Dataset):
    def __init__(self, inner: RecordIODataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i):
        image, label = self.inner[i]
        return image, label, os.getpid(), self.inner.reader._pid


def test_dataloader_workers_open_their_own_handle(tmp_path):
    labels = [i % 3 for i in range(12)]
    write_recordio(tmp_path / "train", [(_jpeg(i), label) for i, label in enumerate(labels)])
    ds = RecordIODataset(tmp_path)
    expected = [ds[i] for i in range(len(ds))]  # opens the handle in this process first
    loader = DataLoader(_WithPid(ds), batch_size=3, num_workers=2, shuffle=False)
    images, got_labels, pids, handle_pids = (torch.cat(t) for t in zip(*loader))
    torch.testing.assert_close(images, torch.stack([e[0] for e in expected]), rtol=0, atol=0)
    assert got_labels.tolist() == [e[1] for e in expected]
    assert torch.equal(pids, handle_pids)  # each worker reads through a handle it opened
    assert len(set(pids.tolist())) == 2 and os.getpid() not in pids.tolist()
