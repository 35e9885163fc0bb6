"""Which filesystem events matter, and when a batch of them is ready to index.

:class:`ChangeFilter` keeps only events about photos (and folders) under a watched root, never
under an excluded folder (hidden, ``@eaDir``, ``.thumbnails``, the user's globs) nor under the
library's own folder, whose catalog and index writes would otherwise feed back into new passes.

:class:`ChangeBatch` debounces each watched folder on its own: a folder is due once no change has
come to it for ``quiet`` seconds and every file written in it meanwhile has stopped growing (its
size and mtime unchanged since the last look, or its mtime older than ``quiet``), so a long copy
or a camera import is indexed once, after it is complete, and never delays another folder.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable

from watchdog.events import FileSystemEvent

from ..scan import is_excluded, is_image_name

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
    """Changes since the last pass, per watched folder: when its last change came, how long it is
    held (a file in it still growing, a retry), and the files written in it meanwhile.

    Each folder is due on its own, so a long copy into one folder never delays another's
    changes; folders due together are taken together (one pass, so a move between them is a
    move)."""

    def __init__(self, quiet: float, settle: float) -> None:
        self.quiet, self.settle = quiet, settle
        self._cond = threading.Condition()
        self._roots: dict[str, float] = {}  # root -> its last change
        self._holds: dict[str, float] = {}  # root -> not due before (growing file, retry)
        self._files: dict[str, tuple[Stat | None, frozenset[str]]] = {}  # (last look, roots)
        self._seq = 0

    def note(self, roots: Iterable[str], path: str | None = None, delay: float = 0.0) -> None:
        """Folders changed (``path``: a file written); ``delay``: not due sooner than this."""
        roots = frozenset(roots)
        with self._cond:
            now = time.monotonic()
            fresh = not roots <= self._roots.keys()
            for root in roots:
                self._roots[root] = now
                if delay:
                    self._holds[root] = max(self._holds.get(root, 0.0), now + delay)
            self._seq += 1
            if path is not None:
                before = self._files.get(path, (None, frozenset()))[1]
                self._files[path] = (None, before | roots)
            if fresh or delay:  # later changes only move a due time back: no need to wake
                self._cond.notify_all()

    def pending(self) -> bool:
        with self._cond:
            return bool(self._roots)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _due_at(self, root: str) -> float:
        return max(self._roots[root] + self.quiet, self._holds.get(root, 0.0))

    def wait(self, limit: float) -> None:
        """Sleep until a folder is due, a new folder changes, or ``limit`` seconds pass."""
        with self._cond:
            timeout = limit
            if self._roots:
                due = min(self._due_at(root) for root in self._roots) - time.monotonic()
                timeout = min(limit, due)
            if timeout > 0:
                self._cond.wait(timeout)

    def take(self) -> list[str] | None:
        """The folders to index now, or None while changes are still coming to every one."""
        with self._cond:
            now = time.monotonic()
            due = {root for root in self._roots if now >= self._due_at(root)}
            if not due:
                return None
            files = {path: seen for path, (seen, roots) in self._files.items() if roots & due}
            seq = self._seq
        growing = growing_files(files, self.quiet)  # stat outside the lock: it can be slow
        with self._cond:
            if self._seq != seq:  # more changes came meanwhile
                return None
            held = set()
            for path, stat in growing.items():
                roots = self._files[path][1]
                self._files[path] = (stat, roots)
                held |= roots  # the folders of a file still being written wait for it
            for root in held:
                self._holds[root] = time.monotonic() + self.settle
            ready = due - held
            if not ready:
                return None
            for root in ready:
                del self._roots[root]
                self._holds.pop(root, None)
            for path, (seen, roots) in list(self._files.items()):
                if roots & ready:
                    if roots - ready:  # also noted for a folder still waiting
                        self._files[path] = (seen, roots - ready)
                    else:
                        del self._files[path]
            return sorted(ready)


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
