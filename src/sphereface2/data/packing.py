"""Writers: image lists and folders -> RecordIO training sets, pair lists -> validation ``.bin``.

Encoded inputs are kept as they are whenever possible: a JPEG file (or JPEG bytes) is
stored byte for byte, so packing never loses quality twice; other formats (PNG, BMP, ...)
and raw RGB arrays are JPEG-encoded at ``quality``.

Every encoded input is decoded in full once before it is stored: a truncated JPEG still
has a valid header, so a header check alone would pack images that no reader can decode.
A RecordIO set is written under temporary names and renamed into place at the end; a
pack that fails removes what it wrote and leaves any earlier set in place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from sphereface2.data.bin_format import write_bin
from sphereface2.data.decode import ImageDecodeError, decode_image, encode_jpeg
from sphereface2.data.recordio import IRHeader, RecordIOWriter, pack_record
from sphereface2.data.training_sets import image_samples

# Labels and keys are stored as float32 in record headers: integers above 2^24 lose precision.
_FLOAT32_EXACT = 2**24
_LOG_EVERY = 10000

Log = Callable[[str], None]


class PackOutputExistsError(FileExistsError, ValueError):
    """The output folder already holds a training set and overwriting was not asked for.

    Also a ``ValueError``: a user-facing refusal, reported like the other input errors.
    """


def _as_jpeg(
    image: Any, quality: int, encode: bool, name: str
) -> tuple[bytes, tuple[int, int], bool]:
    """``(bytes, (h, w), reencoded)`` for one sample; errors name the sample.

    Encoded bytes are decoded in full (every pixel) before they are kept or transcoded.
    """
    if isinstance(image, np.ndarray):
        if not encode:
            raise ValueError(f"{name}: got a pixel array but encode=False (pass encoded bytes)")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{image.dtype} {image.shape}"
            raise ValueError(f"{name}: expected RGB uint8 (H, W, 3), got {got}")
        return encode_jpeg(image, quality), (image.shape[0], image.shape[1]), True
    if not isinstance(image, (bytes, bytearray)):
        kind = type(image).__name__
        raise ValueError(f"{name}: expected an RGB array or encoded bytes, got {kind}")
    data = bytes(image)
    rgb = decode_image(data, source=name)  # raises ImageDecodeError naming the sample
    size = (rgb.shape[0], rgb.shape[1])
    if not encode or data[:3] == b"\xff\xd8\xff":
        return data, size, False
    return encode_jpeg(rgb, quality), size, True


def _check_label(label: Any, name: str) -> int:
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        raise ValueError(f"{name}: label must be an int, got {label!r}")
    if label < 0:
        raise ValueError(f"{name}: negative label {label}")
    if label >= _FLOAT32_EXACT:
        raise ValueError(f"{name}: label {label} >= 2^24 cannot be stored exactly (float32)")
    return int(label)


class _Progress:
    def __init__(self, log: Log | None, total: int | None, what: str) -> None:
        self.log, self.total, self.what = log, total, what
        self.start = time.monotonic()

    def step(self, done: int) -> None:
        if self.log is None or done % _LOG_EVERY:
            return
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = done / elapsed
        line = f"{self.what}: {done}"
        if self.total:
            eta = (self.total - done) / rate
            line += f"/{self.total} ({rate:.0f}/s, ETA {eta / 60:.1f} min)"
        else:
            line += f" ({rate:.0f}/s)"
        self.log(line)


@dataclass
class _Spooled:
    """The checked images of a pack, stored one after another in a spool file."""

    entries: list[tuple[int, int, int]] = field(default_factory=list)  # (label, offset, length)
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    reencoded: int = 0
    skipped: list[str] = field(default_factory=list)  # the decode error of each skipped image
    max_label: int = -1  # over every sample, skipped or not, so skipping keeps num_classes


def _spool_samples(
    samples: Iterable[tuple[Any, Any, str]],
    spool: IO[bytes],
    quality: int,
    encode: bool,
    skip_corrupt: bool,
    log: Log | None,
    total: int | None,
) -> _Spooled:
    out = _Spooled()
    progress = _Progress(log, total, "read")
    for image, label, name in samples:
        label = _check_label(label, name)
        out.max_label = max(out.max_label, label)
        try:
            data, size, was_encoded = _as_jpeg(image, quality, encode, name)
        except ImageDecodeError as err:
            if not skip_corrupt:
                raise
            out.skipped.append(str(err))
            if log is not None:
                log(f"skipped: {err}")
        else:
            out.entries.append((label, spool.tell(), len(data)))
            spool.write(data)
            out.sizes[size] += 1
            out.reencoded += was_encoded
        progress.step(len(out.entries) + len(out.skipped))
    return out


def _write_records(
    rec_path: str, idx_path: str, spool: IO[bytes], spooled: _Spooled, num_classes: int
) -> np.ndarray:
    """Write the meta, image and identity records grouped by label; returns class counts."""
    entries = spooled.entries
    num_images = len(entries)
    id_start, id_end = num_images + 1, num_images + 1 + num_classes
    order = sorted(range(num_images), key=lambda i: entries[i][0])  # stable
    # Sorted by label, identity c owns keys first[c] .. first[c] + counts[c] - 1.
    counts = np.bincount([label for label, _, _ in entries], minlength=num_classes)
    first = 1 + np.cumsum(counts) - counts
    with RecordIOWriter(rec_path, idx_path) as writer:
        writer.write(0, pack_record(IRHeader(2, (id_start, id_end))))
        for key, i in enumerate(order, start=1):
            label, offset, length = entries[i]
            spool.seek(offset)
            writer.write(key, pack_record(IRHeader(0, float(label), key), spool.read(length)))
        for label in range(num_classes):
            key = id_start + label
            span = (int(first[label]), int(first[label] + counts[label]))
            writer.write(key, pack_record(IRHeader(2, span, key)))
    return counts


def _remove_quietly(paths: Iterable[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _write_recordio(
    prefix: str,
    samples: Iterable[tuple[Any, Any, str]],
    quality: int,
    encode: bool,
    log: Log | None = None,
    total: int | None = None,
    skip_corrupt: bool = False,
) -> dict[str, Any]:
    out_dir = os.path.dirname(os.path.abspath(prefix))
    created_dir = not os.path.isdir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    finals = [f"{prefix}.rec", f"{prefix}.idx", os.path.join(out_dir, "property")]
    temps = [f"{path}.tmp{os.getpid()}" for path in finals]
    try:
        # Samples may arrive in any label order; spool them (an anonymous file, gone on
        # close) so memory stays flat, then write them grouped by label.
        with tempfile.TemporaryFile(dir=out_dir) as spool:
            spooled = _spool_samples(samples, spool, quality, encode, skip_corrupt, log, total)
            if not spooled.entries:
                why = f" (all {len(spooled.skipped)} failed to decode)" if spooled.skipped else ""
                raise ValueError(f"{prefix}: no samples to write{why}")
            num_images, num_classes = len(spooled.entries), spooled.max_label + 1
            if num_images + 1 + num_classes > _FLOAT32_EXACT:
                raise ValueError(
                    f"{prefix}: {num_images} images + {num_classes} identities exceed 2^24 "
                    f"records; RecordIO meta labels are float32 and could not address them "
                    f"exactly"
                )
            counts = _write_records(temps[0], temps[1], spool, spooled, num_classes)
        (height, width), _ = spooled.sizes.most_common(1)[0]
        with open(temps[2], "w", encoding="utf-8") as f:
            f.write(f"{num_classes},{height},{width}\n")
        for temp, final in zip(temps, finals):
            os.replace(temp, final)
    except BaseException:
        _remove_quietly(temps)
        if created_dir:
            with contextlib.suppress(OSError):
                os.rmdir(out_dir)  # only when empty: nothing of ours is left in it
        raise
    if len(spooled.sizes) > 1:
        warnings.warn(
            f"{prefix}: images have {len(spooled.sizes)} different sizes; property records "
            f"{height}x{width}, the most common",
            RuntimeWarning,
            stacklevel=3,
        )
    empty = int((counts == 0).sum())
    if empty:
        warnings.warn(
            f"{prefix}: {empty} label(s) in 0..{num_classes - 1} have no images",
            RuntimeWarning,
            stacklevel=3,
        )
    return {
        "rec": finals[0],
        "idx": finals[1],
        "property": finals[2],
        "images": num_images,
        "num_classes": num_classes,
        "empty_classes": empty,
        "reencoded": spooled.reencoded,
        "copied": num_images - spooled.reencoded,
        "skipped": len(spooled.skipped),
        "skipped_images": spooled.skipped,
        "image_sizes": {f"{h}x{w}": n for (h, w), n in sorted(spooled.sizes.items())},
    }


def write_recordio(
    prefix: str | os.PathLike,
    samples: Iterable[tuple[np.ndarray | bytes, int]],
    quality: int = 95,
    encode: bool = True,
) -> dict[str, Any]:
    """Write an MS1M-layout RecordIO training set: ``prefix.rec``, ``prefix.idx``, ``property``.

    ``samples`` yields ``(image, label)`` with ``image`` an RGB uint8 (H, W, 3) array or
    encoded bytes and ``label`` an int >= 0. Record 0 is the meta record; images get keys
    ``1..N`` grouped by label in ascending order (input order kept within a label); then
    one identity record per label ``0..max`` holding ``[first_key, end_key]``.

    With ``encode=True`` every stored image is a JPEG: arrays are encoded at ``quality``,
    JPEG bytes are stored unchanged, other encoded formats are transcoded. With
    ``encode=False`` encoded bytes are stored unchanged whatever their format and arrays
    are an error. Either way encoded bytes are decoded in full first; one that fails raises
    :class:`~sphereface2.data.decode.ImageDecodeError` naming the sample, and nothing is
    written. Existing output files are replaced. Returns counts and paths.
    """
    named = ((image, label, f"sample {n}") for n, (image, label) in enumerate(samples))
    return _write_recordio(str(prefix), named, quality, encode)


def _file_samples(samples: list[tuple[str, int]]) -> Iterator[tuple[bytes, int, str]]:
    for path, label in samples:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise FileNotFoundError(f"{path}: cannot read image ({err.strerror})") from err
        yield data, label, path


def _refuse_existing(prefix: str) -> None:
    out_dir = os.path.dirname(os.path.abspath(prefix))
    present = [
        os.path.basename(path)
        for path in (os.path.join(out_dir, "property"), f"{prefix}.rec", f"{prefix}.idx")
        if os.path.exists(path)
    ]
    if present:
        raise PackOutputExistsError(
            f"{out_dir} already holds a training set ({', '.join(present)}); pass --overwrite "
            f"(overwrite=True) to replace it"
        )


def pack_training_set(
    src: str | os.PathLike,
    out_prefix: str | os.PathLike,
    quality: int = 95,
    root: str | os.PathLike | None = None,
    log: Log | None = None,
    skip_corrupt: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Pack an image folder or list file into a RecordIO training set.

    Every image is decoded in full once; JPEG files are then copied byte for byte (no
    second lossy pass) and other formats JPEG-encoded at ``quality``. An image that fails
    to decode stops the pack with an :class:`~sphereface2.data.decode.ImageDecodeError`
    naming its path, or with ``skip_corrupt`` is left out and listed (a missing file stops
    it either way: that is usually a wrong ``root``). ``root`` resolves relative paths of a
    list. ``log`` receives a progress line every 10,000 images and each skipped image. A
    folder already holding ``property`` or the prefix's ``.rec``/``.idx`` is refused with
    :class:`PackOutputExistsError` unless ``overwrite``. Returns :func:`write_recordio`'s
    counts (with ``skipped`` and ``skipped_images``) plus ``class_names`` when the source
    names its identities (folders, lists of names).
    """
    out_prefix = str(out_prefix)
    if not overwrite:
        _refuse_existing(out_prefix)
    samples, class_names = image_samples(src, root)
    result = _write_recordio(
        out_prefix,
        _file_samples(samples),
        quality,
        True,
        log=log,
        total=len(samples),
        skip_corrupt=skip_corrupt,
    )
    result["source"] = str(src)
    if class_names is not None:
        result["class_names"] = class_names
    return result


def pack_pairs(
    pair_list_path: str | os.PathLike,
    out_bin: str | os.PathLike,
    root: str | os.PathLike | None = None,
    quality: int = 95,
    variant: str = "numpy",
) -> dict[str, Any]:
    """Pack an OpenSphere pair list (``label path0 path1``) into a validation ``.bin``.

    JPEG files are stored byte for byte; other formats are JPEG-encoded at ``quality``.
    Errors name the image and its line in the list.
    """
    from sphereface2.data.pairs import read_pair_list  # colleague's module; keep import local

    pairs = read_pair_list(pair_list_path, root=root)
    cache: dict[str, bytes] = {}
    reencoded = 0
    images: list[bytes] = []
    for i in range(len(pairs)):
        for path in (pairs.paths0[i], pairs.paths1[i]):
            if path not in cache:
                where = f"{path} (pair on line {pairs.line_of(i)} of {pair_list_path})"
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError as err:
                    raise FileNotFoundError(f"{where}: cannot read image ({err.strerror})") from err
                cache[path], _, was_encoded = _as_jpeg(data, quality, True, where)
                reencoded += was_encoded
            images.append(cache[path])
    write_bin(out_bin, images, pairs.issame, variant=variant)
    genuine = int(pairs.issame.sum())
    return {
        "bin": str(out_bin),
        "pairs": len(pairs),
        "genuine": genuine,
        "impostor": len(pairs) - genuine,
        "unique_images": len(cache),
        "reencoded": reencoded,
    }
