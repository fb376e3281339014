"""One line for an operating-system error: the operation, the path and the reason.

``PermissionError: [Errno 13] Permission denied: 'runs/x/eval'`` names neither what was
being done nor why that matters; :func:`describe_os_error` turns it into
``cannot create the folder runs/x/eval: Permission denied``. The operation comes from an
:class:`OperationError` when the code knew it, else from the innermost function of the
traceback (``mkdir``, ``open`` with its mode, ``rename``...) or the call on the failing
line (``os.replace(...)``); the path from the error, else from an open file in the failing
frames (a full disk fails a ``write`` that names no path).
"""

from __future__ import annotations

import errno
import io
import linecache
import os
import re
import types

#: Function names in a traceback -> the operation they perform.
_OPERATIONS = {
    "mkdir": "create the folder",
    "makedirs": "create the folder",
    "mkstemp": "create a file in",
    "touch": "create",
    "write_text": "write",
    "write_bytes": "write",
    "write": "write",
    "writelines": "write",
    "save": "write",
    "savez": "write",
    "savefig": "write",
    "flush": "write",
    "fsync": "write",
    "read_text": "read",
    "read_bytes": "read",
    "read": "read",
    "readline": "read",
    "load": "read",
    "rename": "rename",
    "replace": "rename",
    "move": "move",
    "copyfile": "copy",
    "copy": "copy",
    "copy2": "copy",
    "unlink": "delete",
    "remove": "delete",
    "rmdir": "delete the folder",
    "rmtree": "delete the folder",
    "iterdir": "list the folder",
    "listdir": "list the folder",
    "scandir": "list the folder",
    "glob": "list the folder",
    "stat": "look up",
    "chmod": "change the permissions of",
    "symlink_to": "link",
    "symlink": "link",
}

_CALL = re.compile(r"\b(\w+)\s*\(")

#: Why the error matters, where the system's words are terse.
_HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "a file stands where a folder should be",
    errno.EISDIR: "it is a folder, not a file",
}


class OperationError(OSError):
    """An OSError from code that knew what it was doing: ``operation`` (e.g. ``"write a
    test file in the report folder"``) and the path, with the original errno and reason."""

    def __init__(self, err: OSError, operation: str, path: str | os.PathLike) -> None:
        super().__init__(err.errno, err.strerror or str(err), os.fspath(path))
        self.operation = operation


def _frames(tb: types.TracebackType | None) -> list[types.FrameType]:
    """The traceback's frames, innermost first."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames[::-1]


def _open_mode_operation(frame: types.FrameType) -> str:
    mode = frame.f_locals.get("mode")
    if isinstance(mode, str):
        return "open for writing" if set(mode) & set("wax+") else "open for reading"
    return "open"


def _called_in_failing_line(tb: types.TracebackType | None) -> str | None:
    """The operation of a known call on the innermost traceback line: C functions such as
    ``os.replace`` leave no frame of their own."""
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    line = linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno)
    for name in _CALL.findall(line):
        if name == "open":
            return "open"
        if name in _OPERATIONS:
            return _OPERATIONS[name]
    return None


def _frame_operation(err: OSError) -> str | None:
    """The operation given with the error, or of the innermost known function."""
    given = getattr(err, "operation", None)
    if given:
        return str(given)
    for frame in _frames(err.__traceback__):
        name = frame.f_code.co_name
        if name in ("open", "_open", "__init__") and "mode" in frame.f_locals:
            return _open_mode_operation(frame)
        if name in _OPERATIONS:
            return _OPERATIONS[name]
    return None


def _file_from_frames(err: OSError) -> tuple[str | None, str | None]:
    """``(path, operation)`` of an open file in the failing frames: a ``write`` on a full
    disk names no path, but the file it wrote to is a local of some frame."""
    for frame in _frames(err.__traceback__):
        for value in frame.f_locals.values():
            if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str):
                writing = set(str(getattr(value, "mode", ""))) & set("wax+")
                return value.name, "write" if writing else "read"
    return None, None


def describe_os_error(err: OSError) -> str:
    """``cannot <operation> <path>: <reason>`` in one line (see the module docstring).

    An OSError raised with a message only (no errno) is already worded for people: it is
    returned as it is.
    """
    if err.errno is None:
        return " ".join(str(err).split())
    path, operation = err.filename, _frame_operation(err)
    if path is None:  # e.g. write() on a full disk: the open file's name and mode
        path, file_operation = _file_from_frames(err)
        operation = operation or file_operation
    operation = operation or _called_in_failing_line(err.__traceback__) or "use"
    reason = err.strerror or os.strerror(err.errno)
    hint = _HINTS.get(err.errno)
    if hint and hint.lower() != reason.lower():
        reason = f"{reason} ({hint})"
    if err.errno == errno.EEXIST and operation.startswith("create"):
        reason = f"{reason} (a file of that name is in the way)"
    if path is None:
        return f"cannot {operation} a file: {reason}"
    where = os.fsdecode(path)
    if err.filename2 is not None:
        where = f"{where} to {os.fsdecode(err.filename2)}"
    return f"cannot {operation} {where}: {reason}"
