"""MXNet/dmlc RecordIO, read and written without MXNet.

A ``.rec`` file is a sequence of parts. Each part is the little-endian uint32 magic
``0xCED7230A``, a uint32 ``lrec`` (top 3 bits: continuation flag, low 29 bits: length),
the payload bytes and zero padding to a multiple of 4. dmlc's writer never lets the magic
word appear at a 4-aligned offset inside a part: it cuts the payload there (flag 1 = first
part, 2 = middle, 3 = last) and the reader puts the magic back between the parts.

A payload is a 24-byte header (struct ``<IfQQ``: flag, label, id, id2), then ``flag``
float32 labels when flag > 0, then the encoded image. The ``.idx`` file lists one
``key<TAB>byte_offset`` line per record, in any key order.
"""

from __future__ import annotations

import contextlib
import os
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
_LENGTH_MASK = (1 << 29) - 1
_HEADER = struct.Struct("<IfQQ")
HEADER_SIZE = _HEADER.size  # 24
_PART_HEADER = struct.Struct("<II")


class RecordIOError(ValueError):
    """A malformed .rec/.idx file; the message names the file and the record."""


@dataclass(frozen=True)
class IRHeader:
    """Header of one record.

    ``label`` is a float when ``flag`` is 0, otherwise a tuple of ``flag`` floats
    (e.g. the meta record's ``(id_start, id_end)``). ``pack_record`` derives ``flag``
    from ``label``, as MXNet's ``recordio.pack`` does.
    """

    flag: int
    label: float | tuple[float, ...]
    id: int = 0
    id2: int = 0


def pack_record(header: IRHeader, image_bytes: bytes = b"") -> bytes:
    """Serialise ``header`` followed by ``image_bytes`` into one record payload."""
    if isinstance(header.label, (int, float, np.integer, np.floating)):
        head = _HEADER.pack(0, float(header.label), header.id, header.id2)
        return head + bytes(image_bytes)
    labels = np.asarray(header.label, dtype="<f4").ravel()
    if labels.size == 0:
        raise ValueError("a label array must hold at least one value")
    head = _HEADER.pack(labels.size, 0.0, header.id, header.id2)
    return head + labels.tobytes() + bytes(image_bytes)


def unpack_record(payload: bytes, source: str = "") -> tuple[IRHeader, bytes]:
    """Split a record payload into its :class:`IRHeader` and the image bytes.

    ``source`` (e.g. ``"train.rec key 17"``) names the record in error messages.
    """
    where = source or "record"
    if len(payload) < HEADER_SIZE:
        raise RecordIOError(
            f"{where}: payload of {len(payload)} bytes is shorter than the "
            f"{HEADER_SIZE}-byte record header"
        )
    flag, label, id1, id2 = _HEADER.unpack_from(payload, 0)
    if flag == 0:
        return IRHeader(0, float(label), id1, id2), bytes(payload[HEADER_SIZE:])
    end = HEADER_SIZE + 4 * flag
    if len(payload) < end:
        raise RecordIOError(
            f"{where}: header announces {flag} labels but the payload holds only "
            f"{len(payload)} bytes"
        )
    labels = np.frombuffer(payload, dtype="<f4", count=flag, offset=HEADER_SIZE)
    return IRHeader(flag, tuple(float(v) for v in labels), id1, id2), bytes(payload[end:])


def _pad(length: int) -> int:
    return (4 - length % 4) % 4


def _read_idx_lines(idx_path: str, text: str) -> tuple[list[int], list[int]]:
    # Slow path, line by line, so that errors can name the line.
    keys: list[int] = []
    offsets: list[int] = []
    seen: set[int] = set()
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise RecordIOError(
                f"{idx_path}:{line_no}: expected 'key<TAB>offset', got {line.rstrip()!r}"
            )
        try:
            key, offset = int(fields[0]), int(fields[1])
        except ValueError:
            raise RecordIOError(
                f"{idx_path}:{line_no}: key and offset must be integers, got {line.rstrip()!r}"
            ) from None
        if offset < 0:
            raise RecordIOError(f"{idx_path}:{line_no}: negative offset {offset}")
        if key in seen:
            raise RecordIOError(f"{idx_path}:{line_no}: duplicate key {key}")
        seen.add(key)
        keys.append(key)
        offsets.append(offset)
    return keys, offsets


_IDX_CHARS = np.zeros(256, dtype=bool)
_IDX_CHARS[list(b"0123456789\t\n")] = True


def _parse_idx_fast(raw: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """Vectorised parse of a well-formed ``.idx`` (digits, one tab per line); else ``None``."""
    chars = np.frombuffer(raw, dtype=np.uint8)
    if not len(chars) or not _IDX_CHARS[chars].all():
        return None
    separators = chars[(chars == 9) | (chars == 10)]
    # Well formed: tab, newline, tab, newline, ... (the last newline may be missing).
    if not ((separators[0::2] == 9).all() and (separators[1::2] == 10).all()):
        return None
    pairs = int((separators == 9).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns when text stops parsing early
        values = np.fromstring(raw.decode("ascii"), dtype=np.int64, sep=" ")
    if len(values) != 2 * pairs:
        return None
    keys, offsets = values[0::2].copy(), values[1::2].copy()
    ordered = np.sort(keys)
    if (ordered[1:] == ordered[:-1]).any():
        return None
    return keys, offsets


def read_idx(idx_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parse a ``.idx`` file into ``(keys, offsets)`` int64 arrays in file order.

    Well-formed files (``key<TAB>offset`` lines) parse in one vectorised pass; anything
    else is read line by line so that an error names the line.
    """
    idx_path = str(idx_path)
    with open(idx_path, "rb") as f:
        raw = f.read()
    parsed = _parse_idx_fast(raw)
    if parsed is not None:
        return parsed
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecordIOError(f"{idx_path}: not a text index file ({err})") from None
    keys, offsets = _read_idx_lines(idx_path, text)
    return np.array(keys, dtype=np.int64), np.array(offsets, dtype=np.int64)


class RecordIOReader:
    """Random access to the records of a ``.rec`` file through its ``.idx``.

    The file handle is opened lazily and re-opened when the process id changes, so a
    reader built in the main process is safe to use in forked DataLoader workers; it is
    also picklable (the handle is not pickled) for spawned workers.
    """

    def __init__(
        self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None
    ) -> None:
        self.rec_path = str(rec_path)
        self.idx_path = str(idx_path) if idx_path is not None else default_idx_path(rec_path)
        if not os.path.isfile(self.rec_path):
            raise FileNotFoundError(f"RecordIO file not found: {self.rec_path}")
        if not os.path.isfile(self.idx_path):
            raise FileNotFoundError(
                f"RecordIO index not found: {self.idx_path} (needed for random access to "
                f"{self.rec_path})"
            )
        keys, offsets = read_idx(self.idx_path)
        self.file_size = os.path.getsize(self.rec_path)
        if len(offsets) and offsets.max() + _PART_HEADER.size > self.file_size:
            bad = int(np.argmax(offsets))
            raise RecordIOError(
                f"{self.idx_path}: key {keys[bad]} points to offset {offsets[bad]}, past the end "
                f"of {self.rec_path} ({self.file_size} bytes)"
            )
        # numpy arrays, not a dict: millions of Python ints would be copied into every forked
        # worker as reference counts change.
        self._keys = keys
        order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[order]
        self._sorted_offsets = offsets[order]
        self._handle = None
        self._pid: int | None = None

    @property
    def keys(self) -> list[int]:
        """Record keys in the order the ``.idx`` lists them."""
        return self._keys.tolist()

    @property
    def key_array(self) -> np.ndarray:
        """Record keys in ``.idx`` order as an int64 array (no copy: do not modify)."""
        return self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def _position(self, key: int) -> int:
        i = int(np.searchsorted(self._sorted_keys, key))
        if i < len(self._sorted_keys) and self._sorted_keys[i] == key:
            return i
        return -1

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (int, np.integer)) and self._position(int(key)) >= 0

    def missing(self, keys: np.ndarray) -> np.ndarray:
        """The entries of ``keys`` that the index does not list."""
        keys = np.asarray(keys, dtype=np.int64)
        return keys[~np.isin(keys, self._sorted_keys)]

    def offset(self, key: int) -> int:
        """Byte offset of record ``key``; ``KeyError`` naming the file when absent."""
        i = self._position(int(key))
        if i < 0:
            raise KeyError(f"{self.idx_path}: no record with key {key}")
        return int(self._sorted_offsets[i])

    def _file(self):
        pid = os.getpid()
        if self._handle is None or self._pid != pid:
            # A handle inherited through fork shares its position with the parent: reopen.
            self._handle = open(self.rec_path, "rb")  # noqa: SIM115 - closed in close()
            self._pid = pid
        return self._handle

    def _read_part_header(self, f, key: int, position: int) -> tuple[int, int]:
        raw = f.read(_PART_HEADER.size)
        if len(raw) < _PART_HEADER.size:
            raise RecordIOError(
                f"{self.rec_path}: record {key} is truncated at byte {position} "
                f"(file has {self.file_size} bytes)"
            )
        magic, lrec = _PART_HEADER.unpack(raw)
        if magic != MAGIC:
            raise RecordIOError(
                f"{self.rec_path}: bad magic 0x{magic:08X} at byte {position} in record {key} "
                f"(expected 0x{MAGIC:08X}; wrong offset in {self.idx_path} or corrupt file)"
            )
        return lrec >> 29, lrec & _LENGTH_MASK

    def read(self, key: int) -> bytes:
        """The payload of record ``key``, with split parts joined again."""
        f = self._file()
        position = self.offset(key)
        f.seek(position)
        parts: list[bytes] = []
        while True:
            cflag, length = self._read_part_header(f, key, position)
            if cflag not in ((2, 3) if parts else (0, 1)):
                raise RecordIOError(
                    f"{self.rec_path}: record {key} has an unexpected part flag {cflag} at "
                    f"byte {position}"
                )
            data = f.read(length)
            if len(data) < length:
                raise RecordIOError(
                    f"{self.rec_path}: record {key} is truncated: needs {length} bytes at byte "
                    f"{position + 8}, file has {self.file_size} bytes"
                )
            parts.append(data)
            if cflag in (0, 3):
                break
            pad = _pad(length)
            f.seek(pad, os.SEEK_CUR)
            position += _PART_HEADER.size + length + pad
        return MAGIC_BYTES.join(parts)

    def read_header(self, key: int) -> IRHeader:
        """The header of record ``key``, reading as few bytes as possible (no image)."""
        f = self._file()
        position = self.offset(key)
        f.seek(position)
        cflag, length = self._read_part_header(f, key, position)
        if cflag != 0:
            return unpack_record(self.read(key), self.describe(key))[0]
        head = f.read(min(length, HEADER_SIZE))
        if len(head) == HEADER_SIZE:
            flag = _HEADER.unpack(head)[0]
            if flag:
                head += f.read(min(4 * flag, length - HEADER_SIZE))
        return unpack_record(head, self.describe(key))[0]

    def describe(self, key: int) -> str:
        """``"path/train.rec record 17"``, for messages."""
        return f"{self.rec_path} record {key}"

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None
        self._pid = None

    def __enter__(self) -> RecordIOReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = None
        return state

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing to report
            self.close()


def iter_records(rec_path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """Walk a ``.rec`` file sequentially, yielding ``(offset, payload)`` (no .idx needed)."""
    rec_path = str(rec_path)
    size = os.path.getsize(rec_path)
    with open(rec_path, "rb") as f:
        position = 0
        while position < size:
            start = position
            parts: list[bytes] = []
            while True:
                raw = f.read(_PART_HEADER.size)
                if len(raw) < _PART_HEADER.size:
                    raise RecordIOError(f"{rec_path}: truncated part header at byte {position}")
                magic, lrec = _PART_HEADER.unpack(raw)
                if magic != MAGIC:
                    raise RecordIOError(
                        f"{rec_path}: bad magic 0x{magic:08X} at byte {position} "
                        f"(expected 0x{MAGIC:08X})"
                    )
                cflag, length = lrec >> 29, lrec & _LENGTH_MASK
                data = f.read(length)
                if len(data) < length:
                    raise RecordIOError(
                        f"{rec_path}: record at byte {start} is truncated (needs {length} bytes)"
                    )
                parts.append(data)
                pad = _pad(length)
                f.seek(pad, os.SEEK_CUR)
                position += _PART_HEADER.size + length + pad
                if cflag in (0, 3):
                    break
            yield start, MAGIC_BYTES.join(parts)


def default_idx_path(rec_path: str | os.PathLike) -> str:
    """``train.rec`` -> ``train.idx`` (same folder)."""
    return str(Path(rec_path).with_suffix(".idx"))


class RecordIOWriter:
    """Write records the way dmlc's ``RecordIOWriter`` does, plus the ``.idx`` lines."""

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike) -> None:
        self.rec_path = str(rec_path)
        self.idx_path = str(idx_path)
        self._rec = open(self.rec_path, "wb")  # noqa: SIM115 - closed in close()
        self._idx = open(self.idx_path, "w", encoding="utf-8")  # noqa: SIM115
        self._keys: set[int] = set()

    def write(self, key: int, payload: bytes) -> int:
        """Append ``payload`` as record ``key``; returns its byte offset."""
        if self._rec.closed:
            raise ValueError(f"{self.rec_path}: writer is closed")
        key = int(key)
        if key in self._keys:
            raise ValueError(f"{self.rec_path}: duplicate record key {key}")
        if len(payload) >= 1 << 29:
            raise ValueError(f"{self.rec_path}: record {key} exceeds the 2^29-byte RecordIO limit")
        self._keys.add(key)
        offset = self._rec.tell()
        self._rec.write(encode_parts(payload))
        self._idx.write(f"{key}\t{offset}\n")
        return offset

    def close(self) -> None:
        if not self._rec.closed:
            self._rec.close()
            self._idx.close()

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_parts(payload: bytes) -> bytes:
    """The on-disk bytes of one record: split at aligned magic words, padded to 4 bytes."""
    payload = bytes(payload)
    chunks: list[bytes] = []
    start = 0
    aligned_end = len(payload) - len(payload) % 4
    position = payload.find(MAGIC_BYTES)
    while position != -1 and position < aligned_end:
        if position % 4 == 0:
            cflag = 1 if start == 0 else 2
            chunks.append(_PART_HEADER.pack(MAGIC, (cflag << 29) | (position - start)))
            chunks.append(payload[start:position])
            start = position + 4
            position = payload.find(MAGIC_BYTES, start)
        else:
            position = payload.find(MAGIC_BYTES, position + 1)
    cflag = 3 if start else 0
    chunks.append(_PART_HEADER.pack(MAGIC, (cflag << 29) | (len(payload) - start)))
    chunks.append(payload[start:])
    chunks.append(b"\0" * _pad(len(payload)))
    return b"".join(chunks)
