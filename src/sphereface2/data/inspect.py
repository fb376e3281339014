"""Summaries of data files: what a path holds, how many identities and images, and
whether a few evenly spaced images actually decode."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sphereface2.data.bin_format import read_bin
from sphereface2.data.decode import decode_image, read_image
from sphereface2.data.list_file import ListFileError, read_list_file
from sphereface2.data.recordio import unpack_record
from sphereface2.data.recordio_dataset import RecordIODataset
from sphereface2.data.training_sets import detect_training_set, image_samples


def _sample_positions(total: int, samples: int) -> list[int]:
    if total <= 0 or samples <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, min(samples, total))})


def _check_samples(total: int, samples: int, load: Callable[[int], np.ndarray]) -> dict[str, Any]:
    sizes: Counter[str] = Counter()
    failures: list[str] = []
    positions = _sample_positions(total, samples)
    for i in positions:
        try:
            rgb = load(i)
        except (ValueError, OSError) as err:
            failures.append(str(err))
            continue
        sizes[f"{rgb.shape[0]}x{rgb.shape[1]}"] += 1
    return {"checked": len(positions), "failed": failures, "image_sizes": dict(sizes)}


def _label_stats(labels: np.ndarray) -> dict[str, Any]:
    counts = np.bincount(labels)
    present = counts[counts > 0]
    return {
        "identities": int(len(present)),
        "label_range": [int(labels.min()), int(labels.max())],
        "images_per_identity": {
            "min": int(present.min()),
            "mean": round(float(present.mean()), 2),
            "max": int(present.max()),
        },
    }


def _inspect_bin(path: str, samples: int) -> dict[str, Any]:
    content = read_bin(path)
    genuine = int(content.issame.sum())
    info: dict[str, Any] = {
        "kind": "bin",
        "path": path,
        "pairs": len(content),
        "genuine": genuine,
        "impostor": len(content) - genuine,
        "images": len(content.images),
    }
    info.update(
        _check_samples(
            len(content.images),
            samples,
            lambda i: decode_image(content.images[i], source=f"{path} image {i}"),
        )
    )
    return info


def _inspect_recordio(path: str, samples: int) -> dict[str, Any]:
    dataset = RecordIODataset(path)
    reader = dataset.reader
    info: dict[str, Any] = {
        "kind": "recordio",
        "path": dataset.rec_path,
        "layout": "ms1m (meta record)" if dataset.meta is not None else "plain image list",
        "records": len(reader),
        "images": len(dataset),
        "num_classes": dataset.num_classes,
        "property": list(dataset.image_size) if dataset.image_size else None,
    }
    info.update(_label_stats(dataset.labels))

    def load(i: int) -> np.ndarray:
        key = int(dataset.keys[i])
        _, image = unpack_record(reader.read(key), reader.describe(key))
        return decode_image(image, source=reader.describe(key))

    info.update(_check_samples(len(dataset), samples, load))
    dataset.close()
    return info


def _inspect_pairs(path: str, samples: int) -> dict[str, Any]:
    from sphereface2.data.pairs import read_pair_list  # colleague's module

    pairs = read_pair_list(path)
    unique = pairs.unique_paths()
    genuine = int(pairs.issame.sum())
    info: dict[str, Any] = {
        "kind": "pair list",
        "path": path,
        "pairs": len(pairs),
        "genuine": genuine,
        "impostor": len(pairs) - genuine,
        "images": len(unique),
    }
    info.update(_check_samples(len(unique), samples, lambda i: read_image(unique[i])))
    return info


def _inspect_images(path: str, kind: str, samples: int) -> dict[str, Any]:
    items, class_names = image_samples(path)
    labels = np.array([label for _, label in items], dtype=np.int64)
    info: dict[str, Any] = {
        "kind": "image folder" if kind == "folder" else "list",
        "path": path,
        "images": len(items),
    }
    info.update(_label_stats(labels))
    if class_names is not None:
        info["first_identities"] = class_names[:5]
    info.update(_check_samples(len(items), samples, lambda i: read_image(items[i][0])))
    return info


def inspect_path(path: str | os.PathLike, samples: int = 5) -> dict[str, Any]:
    """Describe a ``.bin``, RecordIO set, list file, pair list or image folder.

    Decodes ``samples`` evenly spaced images and reports their sizes; images that fail
    to decode are listed under ``"failed"`` rather than raised. Returns a JSON-ready dict.
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file or folder: {path}")
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    if os.path.isfile(path) and Path(path).suffix.lower() == ".bin":
        return _inspect_bin(path, samples)
    kind, file = detect_training_set(path)
    if kind == "recordio":
        return _inspect_recordio(file, samples)
    if kind == "list":
        try:
            read_list_file(file)
        except ListFileError as err:
            # Three fields per line may be a verification pair list rather than a training list.
            if "too many fields" not in str(err):
                raise
            return _inspect_pairs(file, samples)
    return _inspect_images(file, kind, samples)


def format_inspection(info: dict[str, Any]) -> str:
    """Human-readable lines for :func:`inspect_path`'s result."""
    lines = [f"{info['path']}: {info['kind']}"]
    skip = {"path", "kind", "failed"}
    for key, value in info.items():
        if key in skip:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        elif value is None:
            value = "-"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "-"
        lines.append(f"  {key.replace('_', ' ')}: {value}")
    failed = info.get("failed", [])
    if failed:
        lines.append(f"  FAILED to decode {len(failed)} of {info['checked']} sampled images:")
        lines.extend(f"    {msg}" for msg in failed)
    elif info.get("checked"):
        lines.append(f"  all {info['checked']} sampled images decode")
    return "\n".join(lines)
