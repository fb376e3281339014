"""A gallery: the embeddings of known faces with their identities, in a folder.

    OUT/embeddings.npy   (N, d) float32, L2-normalised rows, grouped by identity
    OUT/gallery.json     format, version, the model's fingerprint, the flip setting,
                         identity names, one identity index and one image path per row
    OUT/faiss.index      optional: a faiss index over the rows (faiss's own format)

No pickle anywhere: ``np.load(..., allow_pickle=False)`` and JSON. Rows are stored grouped
by identity (identities in the order of the data's labels), so an exact search reads each
identity's rows as one run (:mod:`sphereface2.inference.search`). Image paths are absolute,
so search results point at the files from any working folder.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sphereface2.data.training_sets import image_samples
from sphereface2.inference.face_model import FaceModel, Progress
from sphereface2.inference.fingerprint import Fingerprint
from sphereface2.inference.search import group_starts

GALLERY_FORMAT = "sphereface2-gallery"
GALLERY_VERSION = 1
EMBEDDINGS_FILE = "embeddings.npy"
META_FILE = "gallery.json"
FAISS_FILE = "faiss.index"


@dataclass
class Gallery:
    """Attributes:
    embeddings: (N, d) float32 unit rows, grouped by identity (maybe a memory map).
    labels: (N,) int64 identity index of each row.
    identities: identity names; ``identities[labels[i]]`` is row i's.
    paths: image path of each row.
    model: the fingerprint of the model that embedded the rows.
    flip: whether the rows are flip-test embeddings (queries must be embedded alike).
    data: the folder or list the gallery was built from.
    created: ISO time of the build.
    index: the faiss index entry of gallery.json (``{"file", "description", "rows"}``),
        or None.
    model_path: the model's path as given to the build (absolute), for a search that
        names no model.
    average_last: the build's ``average_last`` (with a run folder), or None.
    folder: where it was read from or written to.
    """

    embeddings: np.ndarray
    labels: np.ndarray
    identities: list[str]
    paths: list[str]
    model: Fingerprint
    flip: bool
    data: str = ""
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    index: dict[str, Any] | None = None
    model_path: str = ""
    average_last: int | None = None
    folder: Path | None = None

    def __post_init__(self) -> None:
        n = self.embeddings.shape[0]
        if self.labels.shape != (n,) or len(self.paths) != n:
            raise ValueError(
                f"gallery: {n} embeddings, {self.labels.shape[0]} labels, {len(self.paths)} paths"
            )
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.identities)):
            raise ValueError(f"gallery: labels must index the {len(self.identities)} identities")

    @functools.cached_property
    def starts(self) -> np.ndarray:
        """First row of each identity's run of rows."""
        return group_starts(self.labels)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])


def _gallery_rows(data: str | os.PathLike, root: str | os.PathLike | None):
    samples, names = image_samples(data, root)
    labels = np.array([label for _, label in samples], np.int64)
    order = np.argsort(labels, kind="stable")  # identities' rows together, file order within
    paths = [os.path.abspath(samples[i][0]) for i in order]
    count = int(labels.max()) + 1
    identities = list(names) if names is not None else [str(i) for i in range(count)]
    return paths, labels[order], identities


def build_gallery(
    model: FaceModel,
    data: str | os.PathLike,
    root: str | os.PathLike | None = None,
    flip: bool | None = None,
    progress: Progress | None = None,
    model_path: str | os.PathLike = "",
    average_last: int | None = None,
) -> Gallery:
    """Embed an identity folder (``data/<identity>/<image>``) or a list file.

    Args:
        model: the model.
        data: an image folder with one sub-folder per identity, or a list file (``path
            label`` or ``path name`` lines, as for training; names become identities).
        root: image root of a list file (default: the list's folder).
        flip: the flip test (default: the model's setting).
        progress: ``progress(done, total)`` after each batch.
        model_path, average_last: how the model was opened (recorded, so that a search can
            open it again).
    """
    if not Path(data).exists():
        raise FileNotFoundError(f"gallery images not found: {data}")
    paths, labels, identities = _gallery_rows(data, root)
    flip = model.flip if flip is None else flip
    embeddings = model.embed(paths, flip=flip, progress=progress)
    return Gallery(
        embeddings,
        labels,
        identities,
        paths,
        model.fingerprint,
        flip,
        data=str(data),
        model_path=os.path.abspath(model_path) if model_path else "",
        average_last=average_last,
    )


def gallery_metadata(gallery: Gallery) -> dict[str, Any]:
    """The content of ``gallery.json``."""
    return {
        "format": GALLERY_FORMAT,
        "version": GALLERY_VERSION,
        "created": gallery.created,
        "model": gallery.model.to_dict(),
        "model_path": gallery.model_path,
        "average_last": gallery.average_last,
        "flip": gallery.flip,
        "normalized": True,
        "data": gallery.data,
        "rows": len(gallery),
        "dim": int(gallery.embeddings.shape[1]),
        "embeddings_file": EMBEDDINGS_FILE,
        "index": gallery.index,
        "identities": list(gallery.identities),
        "labels": gallery.labels.tolist(),
        "paths": list(gallery.paths),
    }


def _write_renamed(path: Path, write) -> None:
    """Write through a temporary name and rename: an interrupted save leaves the old file."""
    temp = path.with_name(f".{path.name}.tmp")
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def save_gallery(gallery: Gallery, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``out/embeddings.npy`` and ``out/gallery.json`` (and ``out/faiss.index`` if an
    index is given with :func:`attach_index`); refuses to replace a gallery unless
    ``overwrite``. Returns the folder."""
    folder = Path(out)
    if (folder / META_FILE).exists() and not overwrite:
        raise FileExistsError(f"{folder}: already holds a gallery ({META_FILE}); pass overwrite")
    folder.mkdir(parents=True, exist_ok=True)

    def write_npy(temp: Path) -> None:
        with open(temp, "wb") as handle:
            np.save(handle, np.asarray(gallery.embeddings, np.float32), allow_pickle=False)

    def write_json(temp: Path) -> None:
        temp.write_text(json.dumps(gallery_metadata(gallery)) + "\n", encoding="utf-8")

    _write_renamed(folder / EMBEDDINGS_FILE, write_npy)
    if gallery.index is None:
        (folder / FAISS_FILE).unlink(missing_ok=True)  # an old index would not match
    _write_renamed(folder / META_FILE, write_json)  # last: the gallery is complete
    gallery.folder = folder
    return folder


def _field(meta: dict[str, Any], key: str, kind: type | tuple, source: str) -> Any:
    if key not in meta:
        raise ValueError(f"{source}: {key}: missing")
    if not isinstance(meta[key], kind):
        raise ValueError(f"{source}: {key}: expected {kind}, got {type(meta[key]).__name__}")
    return meta[key]


def load_gallery(folder: str | os.PathLike, mmap: bool = True) -> Gallery:
    """Read a gallery folder (embeddings memory-mapped unless ``mmap=False``); errors name
    the file and the key."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: not a gallery (no {META_FILE})")
    source = str(meta_path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != GALLERY_FORMAT:
        raise ValueError(f"{source}: not a sphereface2 gallery (format != {GALLERY_FORMAT!r})")
    if meta.get("version") != GALLERY_VERSION:
        raise ValueError(
            f"{source}: gallery version {meta.get('version')!r}; this sphereface2 reads "
            f"version {GALLERY_VERSION}"
        )
    npy = folder / EMBEDDINGS_FILE
    try:
        embeddings = np.load(npy, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{npy}: cannot read the gallery's embeddings ({err})") from None
    rows = _field(meta, "rows", int, source)
    if embeddings.dtype != np.float32 or embeddings.shape != (rows, meta.get("dim")):
        raise ValueError(
            f"{npy}: {embeddings.dtype} {embeddings.shape}, but {META_FILE} says float32 "
            f"({rows}, {meta.get('dim')})"
        )
    try:
        gallery = Gallery(
            embeddings=embeddings,
            labels=np.asarray(_field(meta, "labels", list, source), np.int64),
            identities=[str(n) for n in _field(meta, "identities", list, source)],
            paths=[str(p) for p in _field(meta, "paths", list, source)],
            model=Fingerprint.from_dict(meta.get("model"), source),
            flip=bool(_field(meta, "flip", bool, source)),
            data=str(meta.get("data", "")),
            created=str(meta.get("created", "")),
            index=meta.get("index"),
            model_path=str(meta.get("model_path") or ""),
            average_last=meta.get("average_last"),
            folder=folder,
        )
    except ValueError as err:
        if str(err).startswith(source):
            raise
        raise ValueError(f"{source}: {err}") from None
    try:
        gallery.starts  # noqa: B018  (check now that the rows are grouped)
    except ValueError as err:
        raise ValueError(f"{source}: labels: {err}") from None
    return gallery
