"""One writer at a time per library: jobs that change the library (index, train, activate) hold
an exclusive lock. Within a process they wait their turn; another process is refused at once with
a clear message. Searching never takes the lock.

The lock is the operating system's, so it goes when its process ends, however it ends: ``flock``
where ``fcntl`` exists (Linux, macOS); elsewhere (Windows) an exclusive transaction on a small
SQLite file, which SQLite takes with the system's own file locks (``LockFileEx`` on Windows).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import LibraryError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


class _Busy(Exception):
    """Another process holds the lock."""


class _FlockLock:
    """``flock`` on the lock file itself."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait: bool) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise _Busy from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)  # closing the file would let the lock go in any case
                self._fd = None


class _SqliteLock:
    """An exclusive transaction on ``<lock file>.db``, held open until released."""

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".db")
        self._conn: sqlite3.Connection | None = None

    def acquire(self, wait: bool) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=24 * 3600 if wait else 0,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise OSError(str(e)) from e
        try:
            conn.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError as e:
            conn.close()
            if "locked" in str(e) or "busy" in str(e):
                raise _Busy from None
            raise OSError(str(e)) from e
        self._conn = conn

    def release(self) -> None:
        if self._conn is not None:
            try:
                with suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            finally:
                self._conn.close()
                self._conn = None


def _os_lock(path: Path) -> _FlockLock | _SqliteLock:
    return _FlockLock(path) if fcntl is not None else _SqliteLock(path)


@contextmanager
def setup_lock(path: Path) -> Iterator[None]:
    """Held while a process opens a library, waiting for it if need be: creating or migrating
    the catalog and registering the first model happen one process at a time. Where the lock
    file cannot be made (a read-only library) there is nothing to create, and no lock."""
    lock = _os_lock(Path(path))
    try:
        lock.acquire(wait=True)
    except OSError:
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _read_holder(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(200).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _write_holder(path: Path, text: str) -> None:
    """What holds the lock, for the message another process shows; only a courtesy."""
    with suppress(OSError):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, text.encode())
        finally:
            os.close(fd)


class WriterLock:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._held: _FlockLock | _SqliteLock | None = None
        self.holds = 0  # how many times this process has taken the lock (0 → 1 holders)

    @property
    def busy(self) -> bool:
        """True while this process holds the lock (some thread of it is changing the library)."""
        return self._depth > 0

    @contextmanager
    def hold(self, what: str) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                self._acquire(what)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._release()

    def _acquire(self, what: str) -> None:
        lock = _os_lock(self.path)
        try:
            lock.acquire(wait=False)
        except _Busy:
            holder = _read_holder(self.path)
            raise LibraryError(
                "another Chikaku process is changing this library"
                + (f" ({holder})" if holder else "")
                + "; try again when it has finished") from None
        except OSError as e:
            raise LibraryError(f"cannot open the library lock {self.path}: "
                               f"{e.strerror or e}") from e
        self._held = lock
        self.holds += 1
        _write_holder(self.path, f"{what}, pid {os.getpid()}")

    def _release(self) -> None:
        if self._held is not None:
            try:
                _write_holder(self.path, "")
            finally:
                self._held.release()
                self._held = None
