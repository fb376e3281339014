"""Check that a command can write its outputs before its long work starts.

An evaluation that embeds for an hour and then finds its report folder read-only loses the
hour. These checks write (then delete) a small file in the output folder or, when it does
not exist yet, in its nearest existing parent (so a failed run leaves no empty folder
behind), so a read-only file system, a full disk, a missing permission or a file standing
where a folder should be fails at once, as an
:class:`~sphereface2.commands.os_errors.OperationError` naming the folder and the operation.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from sphereface2.commands.os_errors import OperationError


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def check_writable_folder(folder: str | os.PathLike, what: str) -> Path:
    """Check that ``folder`` can be created (if missing) and written; returns it.

    ``what`` names the folder in errors, e.g. ``"the report folder"``. Nothing stays
    behind: the folder itself is created later, by whatever writes into it.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    operation = f"write a file in {what}" if existing == folder else f"create {what}"
    if not existing.is_dir():
        # The folder itself is a file (EEXIST), or a file stands on its path (ENOTDIR).
        code = errno.EEXIST if existing == folder else errno.ENOTDIR
        raise OperationError(_oserror(code), f"create {what}", folder)
    try:
        handle, name = tempfile.mkstemp(prefix=".sphereface2-write-test-", dir=existing)
    except OSError as err:
        raise OperationError(err, operation, folder) from err
    try:
        # A byte, not an empty file: a full disk refuses the data, not the name.
        os.write(handle, b"\0")
        os.fsync(handle)
    except OSError as err:
        raise OperationError(err, operation, folder) from err
    finally:
        os.close(handle)
        Path(name).unlink(missing_ok=True)
    return folder


def check_writable_file(path: str | os.PathLike, what: str) -> Path:
    """Check that the file ``path`` can be written: its folder as in
    :func:`check_writable_folder`, and the path itself is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise OperationError(_oserror(errno.EISDIR), f"write {what}", path)
    check_writable_folder(path.parent, f"the folder of {what}")
    return path
