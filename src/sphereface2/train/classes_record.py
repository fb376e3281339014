"""The identity names of a run's training set: ``<run>/classes.json``.

``{"class_names": [...]}`` where ``class_names[label]`` is the name of the identity that
the head's proxy row ``label`` stands for (a folder name, or the name column of a
'path name' list). A training set with integer labels only has no names and no file.
The file is written whole or not at all (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def class_names_of(dataset: Any) -> list[str] | None:
    """``dataset.class_names`` as a list, or None when the set names no identities."""
    names = getattr(dataset, "class_names", None)
    return None if names is None else [str(name) for name in names]


def write_class_names(names: Sequence[str], path: Path) -> None:
    """Save ``{"class_names": names}`` to ``path`` atomically."""
    temp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.json")
    try:
        text = json.dumps({"class_names": list(names)}, ensure_ascii=False, indent=1)
        temp.write_text(text + "\n", encoding="utf-8")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def read_class_names(path: str | os.PathLike) -> list[str]:
    """The names saved by :func:`write_class_names`; errors name the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON: {err}") from None
    names = data.get("class_names") if isinstance(data, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: expected {{'class_names': [name, ...]}}")
    return names
