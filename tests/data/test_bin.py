"""Validation .bin files: both variants round trip, old Python 2 pickles, refused pickles."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
import torch

from sphereface2.data.bin_format import BinPairDataset, read_bin, write_bin
from sphereface2.data.decode import ImageDecodeError, decode_image, encode_jpeg
from sphereface2.data.safe_pickle import UnsafePickleError, safe_loads
from sphereface2.data.transforms import to_tensor


def _images(n: int) -> list[bytes]:
    rng = np.random.default_rng(n)
    return [encode_jpeg(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.mark.parametrize("variant", ["numpy", "bytes"])
def test_round_trip_is_exact(tmp_path, variant):
    images, issame = _images(6), [True, False, True]
    path = tmp_path / "val.bin"
    write_bin(path, images, issame, variant=variant)
    content = read_bin(path)
    assert content.images == images
    assert content.issame.dtype == bool and content.issame.tolist() == issame
    assert len(content) == 3 and content.source == str(path)


def test_variants_store_what_they_say(tmp_path):
    images = _images(2)
    write_bin(tmp_path / "n.bin", images, [True], variant="numpy")
    write_bin(tmp_path / "b.bin", images, [True], variant="bytes")
    raw_numpy, raw_bytes = (tmp_path / "n.bin").read_bytes(), (tmp_path / "b.bin").read_bytes()
    assert raw_numpy[:2] == b"\x80\x04" and b"_reconstruct" in raw_numpy
    assert raw_bytes[:2] == b"\x80\x02" and b"numpy" not in raw_bytes


def _py2_pickle(items: list[bytes], flags: list[bool]) -> bytes:
    """What Python 2's pickle.dump((bins, issame), f, protocol=2) writes for str images."""
    out = [b"\x80\x02", b"]", b"("]  # PROTO 2, EMPTY_LIST, MARK
    for item in items:
        out.append(
            b"U" + bytes([len(item)]) + item
            if len(item) < 256
            else b"T" + struct.pack("<i", len(item)) + item
        )
    out += [b"e", b"]", b"("]  # APPENDS, EMPTY_LIST, MARK
    out += [b"\x88" if f else b"\x89" for f in flags]
    out += [b"e", b"\x86", b"."]  # APPENDS, TUPLE2, STOP
    return b"".join(out)


def test_reads_old_python2_pickles(tmp_path):
    images = _images(4)
    path = tmp_path / "old.bin"
    path.write_bytes(_py2_pickle(images, [False, True]))
    content = read_bin(path)
    assert content.images == images and content.issame.tolist() == [False, True]


def test_reads_numpy_arrays_of_any_shape_and_bool_arrays(tmp_path):
    images = _images(2)
    # InsightFace's own writer stores (N, 1) arrays; flags may be a numpy bool array.
    bins = [np.frombuffer(b, dtype=np.uint8).reshape(-1, 1) for b in images]
    for protocol in (2, 3, 4, 5):
        path = tmp_path / f"p{protocol}.bin"
        path.write_bytes(pickle.dumps((bins, np.array([True])), protocol=protocol))
        content = read_bin(path)
        assert content.images == images and content.issame.tolist() == [True]


class _RunsCommand:
    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def test_malicious_pickle_is_refused(tmp_path):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_RunsCommand(str(sentinel))], [True])))
    with pytest.raises(
        UnsafePickleError, match=r"evil\.bin: refusing to load global '(posix|os)\.system'"
    ):
        read_bin(path)
    assert not sentinel.exists()


def test_object_arrays_and_forged_dtypes_are_refused():
    with pytest.raises(UnsafePickleError, match="object dtype"):
        safe_loads(pickle.dumps(np.array([None, 1], dtype=object)))

    class ForgedDtype:  # a void dtype BUILT with the "holds object pointers" flags
        def __reduce__(self):
            return (np.dtype, ("V8", False, True), (3, "|", None, None, None, 8, 1, 0x3F))

    class FromForged:
        def __reduce__(self):
            from numpy._core.numeric import _frombuffer

            return (_frombuffer, (b"\x01" * 8, ForgedDtype(), (1,), "C"))

    # The forgery works on a bare dtype (so the attack is real) ...
    assert safe_loads(pickle.dumps(ForgedDtype())).hasobject
    # ... but every array is rebuilt with a clean dtype before it sees any data.
    array = safe_loads(pickle.dumps(FromForged(), protocol=4))
    assert array.dtype == np.dtype("V8") and not array.dtype.hasobject

    class RebuiltWithForged:  # ndarray state (BUILD) naming the forged dtype
        def __reduce__(self):
            from numpy._core.multiarray import _reconstruct

            state = (1, (1,), ForgedDtype(), False, b"\x01" * 8)
            return (_reconstruct, (np.ndarray, (0,), b"b"), state)

    array = safe_loads(pickle.dumps(RebuiltWithForged(), protocol=2))
    assert array.dtype == np.dtype("V8") and not array.dtype.hasobject

    class DirectNdarray:  # numpy.ndarray may only be an argument of _reconstruct
        def __reduce__(self):
            return (np.ndarray, ((1,), ForgedDtype()))

    with pytest.raises(UnsafePickleError, match="ndarray may only be rebuilt through _reconstruct"):
        safe_loads(pickle.dumps(DirectNdarray(), protocol=2), source="d.bin")


def test_not_a_pair_tuple_and_mismatched_counts(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(pickle.dumps([b"a", b"b", b"c"]))
    with pytest.raises(ValueError, match=r"x\.bin: expected a pickled \(images, issame\) pair"):
        read_bin(path)
    path.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True, False])))
    with pytest.raises(ValueError, match=r"x\.bin: 3 images for 2 pairs; a \.bin needs exactly 2"):
        read_bin(path)
    path.write_bytes(pickle.dumps(([b"a", 5], [True])))
    with pytest.raises(ValueError, match=r"x\.bin: image 1 is a int"):
        read_bin(path)
    path.write_bytes(pickle.dumps(([b"a", b"b"], [2])))
    with pytest.raises(ValueError, match=r"x\.bin: issame must hold booleans"):
        read_bin(path)


def test_truncated_and_missing_files(tmp_path):
    path = tmp_path / "cut.bin"
    write_bin(path, _images(2), [True])
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"cut\.bin: not a readable pickle"):
        read_bin(path)
    with pytest.raises(FileNotFoundError, match=r"validation \.bin not found: .*nope\.bin"):
        read_bin(tmp_path / "nope.bin")


def test_write_bin_validates(tmp_path):
    with pytest.raises(ValueError, match="3 images for 1 pairs"):
        write_bin(tmp_path / "a.bin", _images(3), [True])
    with pytest.raises(ValueError, match="unknown .bin variant 'lz4'"):
        write_bin(tmp_path / "a.bin", _images(2), [True], variant="lz4")
    with pytest.raises(ValueError, match="image 1 must be non-empty"):
        write_bin(tmp_path / "a.bin", [b"x", b""], [True])
    assert not (tmp_path / "a.bin").exists()


def test_bin_pair_dataset(tmp_path):
    images = _images(4)
    images[3] = b"\xff\xd8\xff" + b"\0" * 20  # a corrupt JPEG
    path = tmp_path / "val.bin"
    write_bin(path, images, [True, False])
    ds = BinPairDataset(path)
    assert len(ds) == 4 and ds.issame.tolist() == [True, False]
    image, index = ds[2]
    assert index == 2
    torch.testing.assert_close(image, to_tensor(decode_image(images[2])), rtol=0, atol=0)
    with pytest.raises(ImageDecodeError, match=r"val\.bin image 3: cannot decode image"):
        ds[3]
    with pytest.raises(IndexError):
        ds[4]
