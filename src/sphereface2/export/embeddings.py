"""Embed a whole image set into files: ``OUT.npy``, ``OUT.csv`` and ``OUT.json``.

- ``OUT.npy``: (N, d) float32, row ``i`` = image ``i``. By default the RAW embeddings
  (flip-fused: image + mirror summed, as in the InsightFace protocol), *not* normalised, so
  nothing is lost; ``normalize=True`` L2-normalises each row (cosine = dot product).
- ``OUT.csv``: ``row,key,label`` per image; ``key`` is the image path relative to the data
  folder (image folders and list files), the record key (``.rec``) or the image index in
  the file (``.bin``); ``label`` is the class index, empty when unknown (``.bin``).
- ``OUT.json``: the model, the data, the settings (flip, normalised), the shape and time.

Accepted data: an identity image folder, a training list (``.txt``/``.lst``), a RecordIO
set (``.rec`` or a folder with ``train.rec``) or a validation ``.bin``.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from sphereface2.data.bin_format import BinPairDataset
from sphereface2.data.list_file import ListFileDataset
from sphereface2.data.training_sets import detect_training_set, open_training_set
from sphereface2.data.transforms import eval_transform
from sphereface2.metrics.verification import l2_normalize
from sphereface2.models.embed import Progress, embed_dataset
from sphereface2.models.loading import EmbeddingModel


@dataclass
class ImageSet:
    """A dataset of images to embed plus one index entry per image.

    Attributes:
        dataset: yields ``(image tensor, anything)`` in row order.
        keys: per image, its path (relative to ``base``), record key or index.
        labels: per image, its class index, or None when unknown.
        kind: ``folder``, ``list``, ``recordio`` or ``bin``.
        source: the path that was opened.
    """

    dataset: Dataset
    keys: list[str]
    labels: list[int | None]
    kind: str
    source: str


def _relative(paths: list[str], base: str) -> list[str]:
    out = []
    for p in paths:
        rel = os.path.relpath(p, base)
        out.append(p if rel.startswith("..") else rel)
    return out


def open_image_set(
    path: str | os.PathLike,
    input_size: tuple[int, int] | None = None,
    root: str | os.PathLike | None = None,
) -> ImageSet:
    """Open images to embed (see the module docstring); ``root`` is the image root of a
    list file (default: the list's folder). Images are resized to ``input_size`` if needed.
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data not found: {path}")
    transform = eval_transform(input_size)
    if os.path.isfile(path) and path.lower().endswith(".bin"):
        dataset = BinPairDataset(path, transform)
        count = len(dataset)
        return ImageSet(dataset, [str(i) for i in range(count)], [None] * count, "bin", path)
    try:
        kind, file = detect_training_set(path)
    except ValueError:
        raise ValueError(
            f"{path}: cannot embed this; expected an image folder (one sub-folder per "
            "identity), a .txt/.lst list, a .rec RecordIO set or a .bin validation file"
        ) from None
    if kind == "list" and root is not None:
        dataset: Any = ListFileDataset(file, root=root, transform=transform)
    else:
        dataset = open_training_set(path, transform=transform)
    labels = [int(v) for v in np.asarray(dataset.labels).tolist()]
    if kind == "recordio":
        keys = [str(int(k)) for k in dataset.keys]
    elif kind == "list":
        base = str(root) if root is not None else os.path.dirname(os.path.abspath(file))
        keys = _relative(dataset.paths, base)
    else:
        keys = _relative(dataset.paths, file)
    return ImageSet(dataset, keys, labels, kind, path)


def output_paths(out: str | os.PathLike) -> dict[str, Path]:
    """``{"npy", "csv", "json"}`` paths for the output prefix ``out`` (``.npy`` optional)."""
    prefix = Path(out)
    if prefix.suffix.lower() == ".npy":
        prefix = prefix.with_suffix("")
    return {ext: prefix.with_name(prefix.name + "." + ext) for ext in ("npy", "csv", "json")}


def write_index(path: str | os.PathLike, keys: list[str], labels: list[int | None]) -> None:
    """The CSV index: header ``row,key,label``, one line per embedding row."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "key", "label"])
        for row, (key, label) in enumerate(zip(keys, labels)):
            writer.writerow([row, key, "" if label is None else label])


def embed_to_files(
    model: EmbeddingModel,
    data: str | os.PathLike,
    out: str | os.PathLike,
    flip: bool = True,
    normalize: bool = False,
    batch_size: int = 64,
    num_workers: int = 0,
    root: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Embed every image of ``data`` and write ``OUT.npy``, ``OUT.csv`` and ``OUT.json``.

    Args:
        model: the model.
        data: an image folder, list file, RecordIO set or ``.bin``.
        out: the output prefix (``emb`` or ``emb.npy`` both give ``emb.npy``, ``emb.csv``,
            ``emb.json``); folders are created.
        flip: sum the raw embeddings of each image and its horizontal flip.
        normalize: L2-normalise each row (default: write the raw embeddings).
        batch_size, num_workers: as in :func:`embed_dataset`.
        root: image root of a list file.
        progress: ``progress(done, total)`` after each batch.

    Returns:
        The ``OUT.json`` content plus the written paths.
    """
    images = open_image_set(data, model.input_size, root)
    paths = output_paths(out)
    paths["npy"].parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    emb = embed_dataset(model, images.dataset, batch_size, flip, num_workers, progress)
    seconds = time.perf_counter() - started
    if normalize:
        emb = l2_normalize(emb, f"embeddings of {images.source}").astype(np.float32)
    np.save(paths["npy"], emb)
    write_index(paths["csv"], images.keys, images.labels)
    summary = {
        "model": {"name": model.name, "description": model.description},
        "data": images.source,
        "kind": images.kind,
        "rows": int(emb.shape[0]),
        "dim": int(emb.shape[1]),
        "dtype": "float32",
        "flip": flip,
        "normalized": normalize,
        "embeddings": (
            (
                "sum of the raw embeddings of each image and its horizontal flip"
                if flip
                else "raw embeddings of the images alone"
            )
            + ("; rows L2-normalised" if normalize else "; not normalised")
        ),
        "index_columns": ["row", "key", "label"],
        "seconds": round(seconds, 3),
        "files": {k: str(v) for k, v in paths.items()},
    }
    paths["json"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
