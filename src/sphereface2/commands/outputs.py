"""Check that a command can write its outputs before its long work starts.

An evaluation that embeds for an hour and then finds its report folder read-only loses the
hour. These checks create the folder and write (then delete) a small file in it, so a
read-only file system, a full disk, a missing permission or a file standing where the
folder should be fails at once, as an :class:`~sphereface2.commands.os_errors.OperationError`
naming the folder and what was tried.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from sphereface2.commands.os_errors import OperationError


def check_writable_folder(folder: str | os.PathLike, what: str) -> Path:
    """Create ``folder`` (with its parents) and write a test file in it; returns the folder.

    ``what`` names the folder in errors, e.g. ``"the report folder"``.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OperationError(err, f"create {what}", folder) from err
    try:
        handle, name = tempfile.mkstemp(prefix=".sphereface2-write-test-", dir=folder)
    except OSError as err:
        raise OperationError(err, f"write a file in {what}", folder) from err
    try:
        # A byte, not an empty file: a full disk refuses the data, not the name.
        os.write(handle, b"\0")
        os.fsync(handle)
    except OSError as err:
        raise OperationError(err, f"write a file in {what}", folder) from err
    finally:
        os.close(handle)
        Path(name).unlink(missing_ok=True)
    return folder


def check_writable_file(path: str | os.PathLike, what: str) -> Path:
    """Check that the file ``path`` can be written: its folder as in
    :func:`check_writable_folder`, and the path itself is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise OperationError(
            IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)), f"write {what}", path
        )
    check_writable_folder(path.parent, f"the folder of {what}")
    return path
