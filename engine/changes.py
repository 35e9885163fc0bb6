"""Which filesystem events matter, and when a batch of them is ready to index.

:class:`ChangeFilter` keeps only events about photos (and folders) under a watched root, never
under an excluded folder (hidden, ``@eaDir``, ``.thumbnails``, the user's globs) nor under the
library's own folder, whose catalog and index writes would otherwise feed back into new passes.

:class:`ChangeBatch` debounces: a batch is due once no change has come for ``quiet`` seconds and
every file written meanwhile has stopped growing (its size and mtime unchanged since the last
look, or its mtime older than ``quiet``), so a long copy or a camera import is indexed once,
after it is complete.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable

from watchdog.events import FileSystemEvent

from .scan import is_excluded, is_image_name

Stat = tuple[int, int]  # (size, mtime_ns)


def growing_files(files: dict[str, Stat | None], quiet: float) -> dict[str, Stat]:
    """Files still being written: changed since the last look and modified within ``quiet``."""
    recent = time.time_ns() - int(quiet * 1e9)
    growing = {}
    for path, seen in files.items():
        try:
            st = os.stat(path)
        except OSError:
            continue  # gone again: its removal is part of the batch
        now = (st.st_size, st.st_mtime_ns)
        if now != seen and st.st_mtime_ns > recent:
            growing[path] = now
    return growing


class ChangeBatch:
    """Changes since the last pass: folders touched, files written, and when the last came."""

    def __init__(self, quiet: float, settle: float) -> None:
        self.quiet, self.settle = quiet, settle
        self._cond = threading.Condition()
        self._roots: set[str] = set()
        self._files: dict[str, Stat | None] = {}
        self._last = self._hold = 0.0  # last change; not due before _hold (growing file, retry)
        self._seq = 0

    def note(self, roots: Iterable[str], path: str | None = None, delay: float = 0.0) -> None:
        """Folders changed (``path``: a file written); ``delay``: not due sooner than this."""
        with self._cond:
            fresh = not self._roots
            self._roots.update(roots)
            self._last = time.monotonic()
            self._hold = max(self._hold, self._last + delay)
            self._seq += 1
            if path is not None:
                self._files[path] = None
            if fresh or delay:  # later changes only move the due time back: no need to wake
                self._cond.notify_all()

    def pending(self) -> bool:
        with self._cond:
            return bool(self._roots)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait(self, limit: float) -> None:
        """Sleep until the batch is due, a new batch starts, or ``limit`` seconds pass."""
        with self._cond:
            timeout = limit
            if self._roots:
                due = max(self._last + self.quiet, self._hold) - time.monotonic()
                timeout = min(limit, due)
            if timeout > 0:
                self._cond.wait(timeout)

    def take(self) -> list[str] | None:
        """The folders to index now, or None while changes are still coming."""
        with self._cond:
            if not self._roots or time.monotonic() < max(self._last + self.quiet, self._hold):
                return None
            files, seq = dict(self._files), self._seq
        growing = growing_files(files, self.quiet)  # stat outside the lock: it can be slow
        with self._cond:
            if self._seq != seq:  # more changes came meanwhile
                return None
            if growing:
                self._files.update(growing)
                self._hold = time.monotonic() + self.settle
                return None
            roots = sorted(self._roots)
            self._roots.clear()
            self._files.clear()
            return roots


class ChangeFilter:
    """Maps a filesystem event to the watched roots it changes (none for irrelevant events)."""

    def __init__(self, roots: list[str], library_dir: str, globs: tuple[str, ...]) -> None:
        self.roots = roots  # shared with the watcher, which may add to it
        self.library_dir = os.path.realpath(library_dir)
        self.globs = globs

    def classify(self, event: FileSystemEvent) -> tuple[set[str], str | None]:
        """(roots changed, the photo file written if any) for one event."""
        roots: set[str] = set()
        written = None
        for raw in (event.src_path, event.dest_path):
            path = os.fsdecode(raw) if raw else ""
            root = self.root_of(path) if path else None
            if root is not None and self.wanted(path, root, event.is_directory):
                roots.add(root)
                if not event.is_directory and event.event_type != "deleted":
                    written = path
        return roots, written

    def root_of(self, path: str) -> str | None:
        """The innermost watched root holding ``path``."""
        best = None
        for root in self.roots:
            inside = path == root or path.startswith(root.rstrip(os.sep) + os.sep)
            if inside and (best is None or len(root) > len(best)):
                best = root
        return best

    def wanted(self, path: str, root: str, is_dir: bool) -> bool:
        if path == root:
            return True
        lib = self.library_dir
        if path == lib or path.startswith(lib + os.sep):  # the catalog's own writes
            return False
        parts = path[len(root):].strip(os.sep).split(os.sep)
        if any(is_excluded(part, self.globs) for part in parts):
            return False
        return is_dir or is_image_name(parts[-1])
