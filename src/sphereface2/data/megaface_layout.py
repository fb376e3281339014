"""MegaFace challenge inputs on disk: which images or devkit feature files a probe or
distractor folder, list file or feature tree holds, in a fixed order, and the probes' identity
labels from their folders (one feature file's format is :mod:`sphereface2.data.megaface_features`;
the evaluation is :mod:`sphereface2.evaluate.megaface_runner`).

- Images: searched recursively by extension, hidden files and folders skipped, sorted by path.
- Devkit feature files: ``<image file name>_<suffix>.bin`` (the suffix names the algorithm).
- List files: one image path per line (the first field), relative to the list's folder.
- Probe identities: the first folder below the probe root (FaceScrub: the person's name).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sphereface2.data.image_folder import IMAGE_EXTENSIONS, is_visible

_FEATURE_NAME = re.compile(
    r"^(?P<image>.+\.(?:" + "|".join(e.lstrip(".") for e in IMAGE_EXTENSIONS) + r"))_"
    r"(?P<suffix>[^/\\]+)\.bin$",
    re.IGNORECASE,
)


def _walk(root: Path, keep) -> list[Path]:
    """Files under ``root`` (recursively, hidden ones skipped) for which ``keep(name)``, sorted."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if is_visible(d))
        found.extend(Path(dirpath) / f for f in filenames if is_visible(f) and keep(f))
    return sorted(found)


def scan_images(root: str | os.PathLike) -> list[Path]:
    """Every image file under ``root`` (by extension, recursively), sorted by path."""
    suffixes = tuple(IMAGE_EXTENSIONS)
    return _walk(Path(root), lambda f: f.lower().endswith(suffixes))


def find_feature_files(
    root: str | os.PathLike, suffix: str | None = None
) -> tuple[list[Path], str]:
    """Devkit feature files ``<image file name>_<suffix>.bin`` under ``root``, sorted by path.

    Args:
        root: the feature tree.
        suffix: the feature suffix (the algorithm name); None: the only one present.

    Returns:
        ``(paths, suffix)``.

    Raises:
        ValueError: no feature files, or several suffixes and none chosen.
    """
    root = Path(root)
    by_suffix: dict[str, list[Path]] = {}
    for path in _walk(root, lambda f: f.lower().endswith(".bin")):
        match = _FEATURE_NAME.match(path.name)
        if match:
            by_suffix.setdefault(match["suffix"], []).append(path)
    if suffix is not None:
        if suffix not in by_suffix:
            found = ", ".join(sorted(by_suffix)) or "none"
            raise ValueError(f"{root}: no feature files '*_{suffix}.bin' (suffixes found: {found})")
        return by_suffix[suffix], suffix
    if not by_suffix:
        raise ValueError(f"{root}: no images and no MegaFace feature files '<image>_<suffix>.bin'")
    if len(by_suffix) > 1:
        raise ValueError(
            f"{root}: feature files with several suffixes ({', '.join(sorted(by_suffix))}); "
            "choose one (feature_suffix / --megaface-suffix)"
        )
    ((only, paths),) = by_suffix.items()
    return paths, only


def read_image_list(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[Path]:
    """Image paths from a list file: the first field of every non-blank, non-``#`` line,
    relative to ``root`` (default: the list's folder). Errors name the file and line."""
    path = Path(path)
    base = Path(root) if root is not None else path.parent
    out: list[Path] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            first = text.split("\t")[0] if "\t" in text else text.split()[0]
            if not first.lower().endswith(tuple(IMAGE_EXTENSIONS)):
                raise ValueError(
                    f"{path}:{lineno}: {first!r} is not an image path "
                    f"(extensions {', '.join(IMAGE_EXTENSIONS)})"
                )
            out.append(base / first)
    if not out:
        raise ValueError(f"{path}: no image paths")
    return out


def identity_labels(root: Path, paths: Sequence[Path]) -> tuple[np.ndarray, list[str]]:
    """Label = the first folder below ``root`` (FaceScrub: the person's name)."""
    names = []
    for p in paths:
        parts = p.relative_to(root).parts
        if len(parts) < 2:
            raise ValueError(f"{p}: not inside an identity folder of {root} (root/<identity>/...)")
        names.append(parts[0])
    identities = sorted(set(names))
    index = {n: i for i, n in enumerate(identities)}
    return np.array([index[n] for n in names], dtype=np.int64), identities


def count_distractors(distractors: str | os.PathLike, feature_suffix: str | None = None) -> int:
    """How many distractors a folder, list file or feature tree holds."""
    path = Path(distractors)
    if path.is_file():
        return len(read_image_list(path))
    if not path.is_dir():
        raise FileNotFoundError(f"MegaFace distractors not found: {path}")
    images = scan_images(path)
    return len(images) if images else len(find_feature_files(path, feature_suffix)[0])
