"""Image folders with one sub-folder per identity (CASIA-WebFace, VGGFace2 layout)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

from sphereface2.data.list_file import SampleListDataset
from sphereface2.data.transforms import Transform

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def is_visible(name: str) -> bool:
    """Whether a file or folder name is not hidden (no leading dot): what every scan keeps."""
    return not name.startswith(".")


def scan_image_folder(
    root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> tuple[list[tuple[str, int]], list[str]]:
    """List ``root/<identity>/**/<image>`` files as ``[(path, label)], class_names``.

    Identities are the sub-folders of ``root`` in sorted order; labels are their positions
    among the identities that hold at least one image. Files are matched by extension
    (case-insensitive) and sorted; hidden files and folders are ignored. Empty identity
    folders are left out with a warning naming them.
    """
    root = str(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder not found: {root}")
    suffixes = tuple(e.lower() for e in extensions)
    class_dirs = sorted(
        d for d in os.listdir(root) if is_visible(d) and os.path.isdir(os.path.join(root, d))
    )
    if not class_dirs:
        raise ValueError(f"{root}: no identity sub-folders (expected root/<identity>/<image>)")
    samples: list[tuple[str, int]] = []
    class_names: list[str] = []
    empty: list[str] = []
    for name in class_dirs:
        files: list[str] = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, name)):
            dirnames[:] = sorted(d for d in dirnames if is_visible(d))
            files.extend(
                os.path.join(dirpath, f)
                for f in filenames
                if is_visible(f) and f.lower().endswith(suffixes)
            )
        if not files:
            empty.append(name)
            continue
        label = len(class_names)
        class_names.append(name)
        samples.extend((path, label) for path in sorted(files))
    if empty:
        shown = ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")
        warnings.warn(
            f"{root}: {len(empty)} identity folder(s) without images were skipped: {shown}",
            RuntimeWarning,
            stacklevel=2,
        )
    if not samples:
        raise ValueError(f"{root}: no images with extensions {', '.join(suffixes)} found")
    return samples, class_names


class ImageFolderDataset(SampleListDataset):
    """The images under ``root/<identity>/``; ``class_names[label]`` is the folder name."""

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Transform | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        samples, class_names = scan_image_folder(root)
        super().__init__(
            samples, transform, skip_corrupt=skip_corrupt, source=str(root), class_names=class_names
        )
