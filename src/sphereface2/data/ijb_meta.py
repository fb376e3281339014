"""IJB-B / IJB-C meta-file readers (the metrics on features are :mod:`sphereface2.metrics.ijb`).

Meta files (space separated, no header, one record a line):

- ``<set>_face_tid_mid.txt``: ``image template_id media_id``
- ``<set>_template_pair_label.txt``: ``template_id_1 template_id_2 label`` (1 = same subject)
- ``<set>_name_5pts_score.txt``: ``image x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 faceness`` (left eye,
  right eye, nose, left and right mouth corners, in crop pixels), same image order as
  ``face_tid_mid``.
- 1:N lists ``<set>_1N_gallery_S1.csv`` (IJB-B S1/S2, IJB-C G1/G2) and
  ``<set>_1N_probe_mixed.csv``: comma separated with a header line, ``TEMPLATE_ID,SUBJECT_ID,...``,
  one line per image.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class IJBFormatError(ValueError):
    """A malformed IJB meta file; the message names the file and the line."""


# ----------------------------------------------------------------------------- readers


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, whitespace-separated fields) of every non-blank line."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if parts:
                yield lineno, parts


def _fail(path: Path, lineno: int, what: str, fields: Sequence[str]) -> IJBFormatError:
    text = " ".join(fields)
    return IJBFormatError(f"{path}:{lineno}: {what}; got {text[:120]!r}")


def _int(path: Path, lineno: int, value: str, name: str, fields: Sequence[str]) -> int:
    try:
        return int(value)
    except ValueError:
        raise _fail(path, lineno, f"{name} must be an integer", fields) from None


def read_face_tid_mid(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read ``*_face_tid_mid.txt``.

    Returns:
        ``(image_names, template_ids, media_ids)``, ids as int64 arrays, in file order.
    """
    path = Path(path)
    names: list[str] = []
    tids: list[int] = []
    mids: list[int] = []
    for lineno, parts in _records(path):
        if len(parts) != 3:
            raise _fail(path, lineno, "expected 3 fields 'image template_id media_id'", parts)
        names.append(parts[0])
        tids.append(_int(path, lineno, parts[1], "template_id", parts))
        mids.append(_int(path, lineno, parts[2], "media_id", parts))
    if not names:
        raise IJBFormatError(f"{path}: no records")
    return names, np.array(tids, dtype=np.int64), np.array(mids, dtype=np.int64)


def read_name_5pts_score(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read ``*_name_5pts_score.txt``.

    Returns:
        ``(image_names, landmarks (N, 5, 2) float32 as (x, y), faceness (N,) float32)``.
    """
    path = Path(path)
    names: list[str] = []
    values: list[list[float]] = []
    for lineno, parts in _records(path):
        if len(parts) != 12:
            raise _fail(path, lineno, "expected 12 fields 'image x1 y1 ... x5 y5 faceness'", parts)
        try:
            row = [float(v) for v in parts[1:]]
        except ValueError:
            raise _fail(path, lineno, "landmarks and faceness must be numbers", parts) from None
        if not all(math.isfinite(v) for v in row):
            raise _fail(path, lineno, "landmarks and faceness must be finite", parts)
        names.append(parts[0])
        values.append(row)
    if not names:
        raise IJBFormatError(f"{path}: no records")
    arr = np.array(values, dtype=np.float32)
    return names, arr[:, :10].reshape(-1, 5, 2), arr[:, 10].copy()


def _read_pairs_slow(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Line-by-line parse that names the first bad line."""
    rows = []
    for lineno, parts in _records(path):
        if len(parts) != 3:
            raise _fail(path, lineno, "expected 3 fields 't1 t2 label'", parts)
        t1 = _int(path, lineno, parts[0], "template_id_1", parts)
        t2 = _int(path, lineno, parts[1], "template_id_2", parts)
        label = _int(path, lineno, parts[2], "label", parts)
        if label not in (0, 1):
            raise _fail(path, lineno, "label must be 0 or 1", parts)
        rows.append((t1, t2, label))
    if not rows:
        raise IJBFormatError(f"{path}: no records")
    a = np.array(rows, dtype=np.int64)
    return a[:, 0].copy(), a[:, 1].copy(), a[:, 2] == 1


def read_template_pair_label(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``*_template_pair_label.txt`` (millions of lines: parsed in C, errors re-located).

    Returns:
        ``(template_ids_1, template_ids_2, labels)``: int64, int64, bool.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # loadtxt only warns on an empty file
            a = np.loadtxt(path, dtype=np.int64, ndmin=2, comments=None)
    except (ValueError, UserWarning):
        return _read_pairs_slow(path)
    if a.shape[1] != 3 or np.any((a[:, 2] != 0) & (a[:, 2] != 1)):
        return _read_pairs_slow(path)
    return a[:, 0].copy(), a[:, 1].copy(), a[:, 2] == 1


def read_1n_list(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a 1:N gallery or probe list (``TEMPLATE_ID,SUBJECT_ID,...`` with a header).

    Returns:
        ``(template_ids, subject_ids)``, one entry per template in order of first appearance.

    Raises:
        IJBFormatError: malformed line, or a template listed under two subjects.
    """
    path = Path(path)
    subject_of: dict[int, int] = {}
    line_of: dict[int, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = [p.strip() for p in line.strip().split(",")]
            if parts == [""]:
                continue
            if lineno == 1 and not parts[0].lstrip("-").isdigit():
                continue  # header
            if len(parts) < 2:
                raise _fail(path, lineno, "expected 'TEMPLATE_ID,SUBJECT_ID,...'", parts)
            t = _int(path, lineno, parts[0], "TEMPLATE_ID", parts)
            s = _int(path, lineno, parts[1], "SUBJECT_ID", parts)
            if subject_of.setdefault(t, s) != s:
                raise _fail(
                    path,
                    lineno,
                    f"template {t} was listed under subject {subject_of[t]} on line {line_of[t]}",
                    parts,
                )
            line_of.setdefault(t, lineno)
    if not subject_of:
        raise IJBFormatError(f"{path}: no records")
    return (
        np.fromiter(subject_of.keys(), dtype=np.int64, count=len(subject_of)),
        np.fromiter(subject_of.values(), dtype=np.int64, count=len(subject_of)),
    )


@dataclass(frozen=True)
class IJBMeta:
    """The per-image and pair metadata of one IJB set (``ijbb`` or ``ijbc``)."""

    image_names: list[str]
    template_ids: np.ndarray
    media_ids: np.ndarray
    landmarks: np.ndarray
    faceness: np.ndarray
    pair_template_ids_1: np.ndarray | None = None
    pair_template_ids_2: np.ndarray | None = None
    pair_labels: np.ndarray | None = None


def read_ijb_meta(meta_dir: str | Path, name: str, pairs: bool = True) -> IJBMeta:
    """Read ``<name>_face_tid_mid.txt``, ``<name>_name_5pts_score.txt`` and (optionally)
    ``<name>_template_pair_label.txt`` from ``meta_dir``, checking that both image lists agree.

    Args:
        meta_dir: the ``meta`` folder.
        name: ``"ijbb"`` or ``"ijbc"`` (any case).
        pairs: also read the 1:1 pair list.
    """
    meta_dir = Path(meta_dir)
    prefix = name.lower()
    tid_path = meta_dir / f"{prefix}_face_tid_mid.txt"
    lmk_path = meta_dir / f"{prefix}_name_5pts_score.txt"
    names, tids, mids = read_face_tid_mid(tid_path)
    names_lmk, landmarks, faceness = read_name_5pts_score(lmk_path)
    if names != names_lmk:
        if len(names) != len(names_lmk):
            raise IJBFormatError(
                f"{tid_path} lists {len(names)} images but {lmk_path} lists {len(names_lmk)}"
            )
        i = next(k for k, (a, b) in enumerate(zip(names, names_lmk)) if a != b)
        raise IJBFormatError(
            f"record {i + 1}: {tid_path} names image {names[i]!r} but {lmk_path} names "
            f"{names_lmk[i]!r}; the two files must list the same images in the same order"
        )
    t1 = t2 = labels = None
    if pairs:
        t1, t2, labels = read_template_pair_label(meta_dir / f"{prefix}_template_pair_label.txt")
    return IJBMeta(names, tids, mids, landmarks, faceness, t1, t2, labels)
