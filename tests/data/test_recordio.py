"""Low-level RecordIO: record headers, dmlc part splitting, the .idx and error messages."""

from __future__ import annotations

import pickle
import struct

import pytest

from sphereface2.data.recordio import (
    MAGIC_BYTES,
    IRHeader,
    RecordIOError,
    RecordIOReader,
    RecordIOWriter,
    encode_parts,
    iter_records,
    pack_record,
    read_idx,
    unpack_record,
)

# MXNet recordio (dmlc-core): a header-only meta record with labels [1.0, 3.0], as written by dmlc.
GOLDEN_META = bytes.fromhex(
    "0a23d7ce 20000000 02000000 00000000 00000000 00000000 00000000 00000000 0000803f 00004040"
)


def _write(tmp_path, records, name="a"):
    rec, idx = tmp_path / f"{name}.rec", tmp_path / f"{name}.idx"
    with RecordIOWriter(rec, idx) as writer:
        for key, payload in records:
            writer.write(key, payload)
    return rec, idx


def test_golden_meta_record_bytes(tmp_path):
    rec, idx = _write(tmp_path, [(0, pack_record(IRHeader(2, (1.0, 3.0), 0, 0)))])
    assert rec.read_bytes() == GOLDEN_META
    assert idx.read_text() == "0\t0\n"


def test_pack_unpack_float_label_and_label_array():
    payload = pack_record(IRHeader(0, 7.0, 5, 9), b"img")
    assert len(payload) == 24 + 3
    header, image = unpack_record(payload)
    assert header == IRHeader(0, 7.0, 5, 9) and image == b"img"

    header, image = unpack_record(pack_record(IRHeader(0, (3.0, 1.5, 2.0), 1, 0), b"xyz"))
    # pack_record derives the flag from the label array, as MXNet's pack does.
    assert header == IRHeader(3, (3.0, 1.5, 2.0), 1, 0) and image == b"xyz"


def test_unpack_errors_name_the_record():
    with pytest.raises(RecordIOError, match=r"train.rec key 3: payload of 10 bytes is shorter"):
        unpack_record(b"\0" * 10, "train.rec key 3")
    lying = struct.pack("<IfQQ", 5, 0.0, 0, 0) + b"\0" * 8  # announces 5 labels, holds 2
    with pytest.raises(RecordIOError, match="announces 5 labels"):
        unpack_record(lying, "r")


def test_payload_is_split_at_aligned_magic_like_dmlc():
    payload = b"\0\0\0\0" + MAGIC_BYTES + b"xy"
    parts = encode_parts(payload)
    expected = (
        MAGIC_BYTES + struct.pack("<I", (1 << 29) | 4) + b"\0\0\0\0"  # first part
        + MAGIC_BYTES + struct.pack("<I", (3 << 29) | 2) + b"xy" + b"\0\0"  # last part, padded
    )  # fmt: skip
    assert parts == expected


def test_unaligned_magic_is_not_split_and_trailing_magic_is():
    unaligned = b"ab" + MAGIC_BYTES + b"cd"
    assert encode_parts(unaligned) == MAGIC_BYTES + struct.pack("<I", 8) + unaligned
    # Magic in the last aligned word: dmlc splits there, leaving an empty last part.
    trailing = b"abcd" + MAGIC_BYTES
    assert encode_parts(trailing) == (
        MAGIC_BYTES + struct.pack("<I", (1 << 29) | 4) + b"abcd"
        + MAGIC_BYTES + struct.pack("<I", 3 << 29)
    )  # fmt: skip


def test_split_records_round_trip(tmp_path):
    header = pack_record(IRHeader(0, 1.0, 1, 0))  # 24 bytes: the magic below is 4-aligned
    payloads = {
        1: header + MAGIC_BYTES + b"middle--" + MAGIC_BYTES + b"end",  # first, middle, last parts
        2: header + b"plain image bytes",
        3: header + MAGIC_BYTES + MAGIC_BYTES,  # adjacent magics: an empty middle part
        4: header + b"x" + MAGIC_BYTES + b"yz",  # unaligned: not split
    }
    rec, _ = _write(tmp_path, payloads.items())
    with RecordIOReader(rec) as reader:
        for key, payload in payloads.items():
            assert reader.read(key) == payload
            assert reader.read_header(key) == IRHeader(0, 1.0, 1, 0)
    assert [p for _, p in iter_records(rec)] == list(payloads.values())


def test_unsorted_idx_keys_and_random_access(tmp_path):
    keys = (7, 2, 9, 0)
    records = [(k, pack_record(IRHeader(0, float(k), k), bytes([k]) * (k + 1))) for k in keys]
    rec, idx = _write(tmp_path, records)
    reader = RecordIOReader(rec, idx)
    assert reader.keys == [7, 2, 9, 0] and len(reader) == 4 and 9 in reader and 3 not in reader
    for key in (0, 9, 2, 7, 2):
        header, image = unpack_record(reader.read(key))
        assert header.label == float(key) and image == bytes([key]) * (key + 1)
    with pytest.raises(KeyError, match="no record with key 3"):
        reader.read(3)
    reader.close()


def test_read_header_reads_only_the_header(tmp_path):
    big = b"\xff" * 100_000
    rec, _ = _write(tmp_path, [(0, pack_record(IRHeader(0, (4.0, 8.0), 3), big))])
    reader = RecordIOReader(rec)
    assert reader.read_header(0) == IRHeader(2, (4.0, 8.0), 3, 0)
    assert reader._file().tell() == 8 + 24 + 8  # part header + record header + 2 labels


def test_reader_is_picklable_and_reopens_after_fork(tmp_path):
    rec, _ = _write(tmp_path, [(0, pack_record(IRHeader(0, 1.0), b"abc"))])
    reader = RecordIOReader(rec)
    reader.read(0)
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._handle is None and unpack_record(clone.read(0))[1] == b"abc"
    reader._pid = -1  # as if this object had been inherited by a forked worker
    old = reader._handle
    assert unpack_record(reader.read(0))[1] == b"abc"
    assert reader._handle is not old
    old.close()


def test_writer_rejects_duplicate_keys(tmp_path):
    with RecordIOWriter(tmp_path / "a.rec", tmp_path / "a.idx") as writer:
        writer.write(1, b"x" * 24)
        with pytest.raises(ValueError, match="duplicate record key 1"):
            writer.write(1, b"y" * 24)


def test_truncated_rec(tmp_path):
    rec, idx = _write(tmp_path, [(0, pack_record(IRHeader(0, 0.0), b"a" * 100))])
    rec.write_bytes(rec.read_bytes()[:60])
    reader = RecordIOReader(rec, idx)
    with pytest.raises(RecordIOError, match=r"a\.rec: record 0 is truncated: needs 124 bytes"):
        reader.read(0)
    with pytest.raises(RecordIOError, match="truncated"):
        list(iter_records(rec))


def test_idx_offset_past_end(tmp_path):
    rec, idx = _write(tmp_path, [(0, pack_record(IRHeader(0, 0.0), b"a"))])
    idx.write_text("0\t0\n1\t5000\n")
    with pytest.raises(RecordIOError, match=r"a\.idx: key 1 points to offset 5000, past the end"):
        RecordIOReader(rec, idx)


def test_bad_magic(tmp_path):
    rec, idx = _write(tmp_path, [(0, pack_record(IRHeader(0, 0.0), b"a" * 40))])
    idx.write_text("0\t8\n")  # points into the payload, not at a part header
    with pytest.raises(RecordIOError, match=r"bad magic 0x00000000 at byte 8 in record 0"):
        RecordIOReader(rec, idx).read(0)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"RecordIO file not found: .*nope\.rec"):
        RecordIOReader(tmp_path / "nope.rec")
    (tmp_path / "only.rec").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"RecordIO index not found: .*only\.idx"):
        RecordIOReader(tmp_path / "only.rec")


def test_malformed_idx_lines(tmp_path):
    idx = tmp_path / "x.idx"
    idx.write_text("0\t0\n1 2 3\n")
    with pytest.raises(RecordIOError, match=r"x\.idx:2: expected 'key<TAB>offset'"):
        read_idx(idx)
    idx.write_text("0\tzero\n")
    with pytest.raises(RecordIOError, match=r"x\.idx:1: key and offset must be integers"):
        read_idx(idx)
    idx.write_text("0\t0\n0\t8\n")
    with pytest.raises(RecordIOError, match=r"x\.idx:2: duplicate key 0"):
        read_idx(idx)


def test_idx_fast_and_line_by_line_parsers_agree(tmp_path):
    idx = tmp_path / "x.idx"
    idx.write_text("5\t0\n2\t40\n9\t120")  # the vectorised path; no final newline
    keys, offsets = read_idx(idx)
    assert keys.tolist() == [5, 2, 9] and offsets.tolist() == [0, 40, 120]
    idx.write_bytes(b"5 0\r\n\r\n2\t40\r\n9   120\r\n")  # spaces, CRLF, a blank line
    keys, offsets = read_idx(idx)
    assert keys.tolist() == [5, 2, 9] and offsets.tolist() == [0, 40, 120]
