"""One writer at a time per library: jobs that change the library (index, train, activate) hold
an exclusive lock. Within a process they wait their turn; another process is refused at once with
a clear message. Searching never takes the lock."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LibraryError


@contextmanager
def setup_lock(path: Path) -> Iterator[None]:
    """Held while a process opens a library, waiting for it if need be: creating or migrating
    the catalog and registering the first model happen one process at a time. Where the lock
    file cannot be made (a read-only library) there is nothing to create, and no lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        fd = None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing the file lets the lock go


class WriterLock:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

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
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise LibraryError(f"cannot open the library lock {self.path}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            finally:
                os.close(fd)
            raise LibraryError(
                "another Chikaku process is changing this library"
                + (f" ({holder})" if holder else "")
                + "; try again when it has finished") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what}, pid {os.getpid()}".encode(), 0)
        self._fd = fd

    def _release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
