"""Summaries of data files: what a path holds, how many identities and images, whether
every label is sound (read from record headers and list lines, no image decoded) and
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
from sphereface2.data.image_folder import scan_image_folder
from sphereface2.data.list_file import ListFileError, read_training_list
from sphereface2.data.pairs import PairList, read_lfw_pairs, read_pair_list
from sphereface2.data.recordio import unpack_record
from sphereface2.data.recordio_dataset import RecordIODataset
from sphereface2.data.text_lines import numbered_lines
from sphereface2.data.training_sets import detect_training_set

_SHOW = 20  # problem messages kept in a summary; the count covers all of them
Log = Callable[[str], None]


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
    if not len(labels):
        return {"identities": 0}
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


def _problems(messages: list[str], count: int | None = None) -> dict[str, Any]:
    return {
        "problems": messages[:_SHOW],
        "problem_count": len(messages) if count is None else count,
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


def _inspect_recordio(
    path: str, samples: int, check_labels: bool, log: Log | None
) -> dict[str, Any]:
    dataset = RecordIODataset(path)
    reader = dataset.reader
    info: dict[str, Any] = {
        "kind": "recordio",
        "path": dataset.rec_path,
        "layout": "ms1m (meta record)" if dataset.meta is not None else "plain image list",
        "records": len(reader),
        "images": len(dataset),
    }
    problems: dict[str, Any] = _problems([])
    if check_labels:
        progress = None if log is None else (lambda done: log(f"labels: {done}/{len(dataset)}"))
        check = dataset.check_labels(show=_SHOW, log=progress)
        labels = check.labels[check.labels >= 0]
        problems = _problems(check.problems, check.problem_count)
        # Without meta record or property the class count comes from the labels just read.
        guessed = dataset.meta is None and dataset.property_path is None
        num_classes = int(labels.max()) + 1 if guessed and len(labels) else dataset.num_classes
    else:
        labels, num_classes = dataset.labels, dataset.num_classes
    info["num_classes"] = num_classes
    info["property"] = list(dataset.image_size) if dataset.image_size else None
    info["labels_checked"] = len(dataset) if check_labels else 0
    info.update(_label_stats(labels))

    def load(i: int) -> np.ndarray:
        key = int(dataset.keys[i])
        _, image = unpack_record(reader.read(key), reader.describe(key))
        return decode_image(image, source=reader.describe(key))

    info.update(_check_samples(len(dataset), samples, load))
    info.update(problems)
    dataset.close()
    return info


def _inspect_pairs(pairs: PairList, kind: str, samples: int) -> dict[str, Any]:
    unique = pairs.unique_paths()
    genuine = int(pairs.issame.sum())
    info: dict[str, Any] = {
        "kind": kind,
        "path": pairs.source,
        "pairs": len(pairs),
        "genuine": genuine,
        "impostor": len(pairs) - genuine,
    }
    if pairs.folds is not None:
        info["folds"] = int(pairs.folds.max()) + 1
    info["images"] = len(unique)
    # Every image is looked for (a stat, not a decode): a wrong root shows up at once.
    missing = [f"{p}: no such image file" for p in unique if not os.path.isfile(p)]
    info.update(_check_samples(len(unique), samples, lambda i: read_image(unique[i])))
    info.update(_problems(missing))
    return info


def _inspect_images(
    path: str, items: list[tuple[str, int]], class_names: list[str] | None, samples: int
) -> dict[str, Any]:
    labels = np.array([label for _, label in items], dtype=np.int64)
    info: dict[str, Any] = {
        "kind": "list" if os.path.isfile(path) else "image folder",
        "path": path,
        "images": len(items),
        "labels_checked": len(items),  # every line was parsed and validated
    }
    info.update(_label_stats(labels))
    if class_names is not None:
        info["first_identities"] = class_names[:5]
    info.update(_check_samples(len(items), samples, lambda i: read_image(items[i][0])))
    info.update(_problems([]))
    return info


def _looks_like_lfw_pairs(path: str) -> bool:
    """LFW's ``pairs.txt``: a header of one or two counts, then ``name n1 n2`` lines."""
    fields = []
    for _, line in numbered_lines(path):
        if line.split():
            fields.append(line.split())
        if len(fields) == 2:
            break
    return (
        len(fields) == 2
        and 1 <= len(fields[0]) <= 2
        and all(f.isdigit() for f in fields[0])
        and len(fields[1]) in (3, 4)
    )


def _inspect_list(file: str, samples: int) -> dict[str, Any]:
    try:
        items, class_names = read_training_list(file)
    except ListFileError as err:
        # Three or four fields per line: a verification pair list rather than a training list.
        if "too many fields" not in str(err):
            raise
        if _looks_like_lfw_pairs(file):
            raise ValueError(
                f"{file}: looks like LFW's pairs.txt; pass --lfw-root (lfw_root=) with the "
                f"folder of its name/name_000N.jpg images"
            ) from None
        return _inspect_pairs(read_pair_list(file), "pair list", samples)
    return _inspect_images(file, items, class_names, samples)


def inspect_path(
    path: str | os.PathLike,
    samples: int = 5,
    lfw_root: str | os.PathLike | None = None,
    check_labels: bool = True,
    log: Log | None = None,
) -> dict[str, Any]:
    """Describe a ``.bin``, RecordIO set, list file, pair list, LFW pairs.txt or image folder.

    Every label is checked: a RecordIO set's image headers are all read (never the images)
    and compared with its identity records or ``property`` (``check_labels=False`` skips
    that pass); list lines are all parsed; pair lists have every image looked for. Label
    and missing-file problems go under ``"problems"`` (the first 20) and
    ``"problem_count"``. ``samples`` evenly spaced images are decoded; those that fail are
    listed under ``"failed"`` rather than raised. ``lfw_root`` reads ``path`` as LFW's
    ``pairs.txt`` with its images under that folder. ``log`` gets progress lines of long
    passes. Returns a JSON-ready dict.
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file or folder: {path}")
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    if lfw_root is not None:
        if not os.path.isfile(path):
            raise ValueError(f"{path}: --lfw-root needs LFW's pairs.txt file, got a folder")
        return _inspect_pairs(read_lfw_pairs(path, lfw_root), "lfw pairs", samples)
    if os.path.isfile(path) and Path(path).suffix.lower() == ".bin":
        return _inspect_bin(path, samples)
    kind, file = detect_training_set(path)
    if kind == "recordio":
        return _inspect_recordio(file, samples, check_labels, log)
    if kind == "list":
        return _inspect_list(file, samples)
    items, class_names = scan_image_folder(file)
    return _inspect_images(file, items, class_names, samples)


def has_problems(info: dict[str, Any]) -> bool:
    """Whether :func:`inspect_path` found a label, file or decode problem."""
    return bool(info.get("failed") or info.get("problem_count"))


def format_inspection(info: dict[str, Any]) -> str:
    """Human-readable lines for :func:`inspect_path`'s result."""
    lines = [f"{info['path']}: {info['kind']}"]
    skip = {"path", "kind", "failed", "problems", "problem_count"}
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
    count, shown = info.get("problem_count", 0), info.get("problems", [])
    if count:
        lines.append(f"  PROBLEMS: {count}")
        lines.extend(f"    {msg}" for msg in shown)
        if count > len(shown):
            lines.append(f"    ... and {count - len(shown)} more")
    failed = info.get("failed", [])
    if failed:
        lines.append(f"  FAILED to decode {len(failed)} of {info['checked']} sampled images:")
        lines.extend(f"    {msg}" for msg in failed)
    elif info.get("checked"):
        lines.append(f"  all {info['checked']} sampled images decode")
    return "\n".join(lines)
