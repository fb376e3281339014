"""One training process per run folder: an exclusive OS lock on ``<run>/.lock``.

Two ``train`` calls writing one run folder (a ``--resume auto`` beside a live run, or two
fresh runs before the first checkpoint) would interleave their logs, overwrite each
other's checkpoints and delete each other's temporary checkpoint files. So a run holds an
exclusive, non-blocking ``flock`` on ``<run>/.lock`` for its whole life, with its pid
written inside; a second process is refused at once with the folder and that pid. The OS
drops the lock when its holder exits in any way (``kill -9`` included): the file stays
behind, but the next run simply locks it again, so a crash never leaves a stale lock.

A forked child (a DataLoader worker) inherits the locked file descriptor and would keep
the lock alive for a while after its parent died; children close their copy right after
the fork (closing a copy does not unlock the parent's). On platforms without ``fcntl``
(Windows) runs are not guarded: the lock is skipped.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from sphereface2.models.run_folder import LOCK_NAME

try:
    import fcntl
except ImportError:  # Windows: no flock; see the module docstring
    fcntl = None  # type: ignore[assignment]

# Descriptors of the locks this process holds, closed in forked children (see above).
_HELD: set[int] = set()


def _close_held_in_child() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)


class RunFolderLockedError(RuntimeError):
    """Another live process holds the run folder's lock; ``pid`` is its process id
    (None when it could not be read)."""

    def __init__(self, folder: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"{folder}: another training process ({holder}) is writing this run folder; "
            "wait for it to finish or stop it, or choose another output folder"
        )
        self.folder = folder
        self.pid = pid


def holder_pid(lock_path: str | Path) -> int | None:
    """The pid written in a lock file (the live holder's, if it is locked), else None."""
    try:
        text = Path(lock_path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


class RunLock:
    """The exclusive lock of one run folder (the folder must exist).

    >>> with RunLock(run_dir):   # raises RunFolderLockedError if another process holds it
    ...     train_there()
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock at once or raise :class:`RunFolderLockedError`; then write our pid."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this lock is already held by this object")
        if fcntl is None:
            return
        for _ in range(3):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise RunFolderLockedError(self.folder, holder_pid(self.path)) from None
            if _is_current_file(fd, self.path):
                break
            # a holder removed the file between our open and our lock: lock the new one
            os.close(fd)
        else:
            raise RuntimeError(f"{self.path}: could not lock it (the file kept being replaced)")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        _HELD.add(fd)

    def release(self) -> None:
        """Unlock (closing the descriptor unlocks it); the file stays for the next run."""
        if self._fd is None:
            return
        _HELD.discard(self._fd)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _is_current_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


class RunFolderClaim:
    """One ``train`` call's hold on its run folder: creates the folder (and missing parents)
    if needed and takes the lock. Unless :meth:`keep` was called, leaving the block removes
    what it created, so a run that fails its start-up checks leaves no half-made folder.

    The lock is released on exit either way.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.lock = RunLock(self.folder)
        self._created: list[Path] = []
        self._created_lock_file = False
        self._keep = False

    def __enter__(self) -> RunFolderClaim:
        self._created = _make_dirs(self.folder)
        self._created_lock_file = not self.lock.path.exists()
        try:
            self.lock.acquire()
        except BaseException:
            self._created_lock_file = False  # the file is the holder's, not ours
            self._undo()
            raise
        return self

    def keep(self) -> None:
        """The run has started: keep the folder when the block ends."""
        self._keep = True

    def __exit__(self, *exc: object) -> None:
        if self._keep:
            self.lock.release()
            return
        if self._created_lock_file:  # unlinked while still held: nobody can lock it after us
            with contextlib.suppress(OSError):
                self.lock.path.unlink()
        self.lock.release()
        self._undo()

    def _undo(self) -> None:
        for directory in reversed(self._created):
            with contextlib.suppress(OSError):  # not empty: something else is there now
                directory.rmdir()


def _make_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, outermost first."""
    missing = []
    path = folder.absolute()
    while not path.exists():
        missing.append(path)
        path = path.parent
    missing.reverse()
    created = []
    for directory in missing:
        try:
            directory.mkdir()
        except FileExistsError:
            continue  # made by someone else in the meantime: theirs, not ours to remove
        created.append(directory)
    return created
