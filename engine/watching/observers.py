"""The watches behind watched folders: native events where they work, polling where they cannot.

Native events (inotify, FSEvents, ReadDirectoryChangesW through watchdog's ``Observer``) are used
unless the folder is on a network or FUSE filesystem, which sends no events for changes made
elsewhere, or the person asked for polling. When the system refuses more watches (inotify's
ENOSPC or EMFILE), that is reported once, and every folder is polled from then on.
"""

from __future__ import annotations

import contextlib
import errno
import warnings
from collections.abc import Callable

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from ..fsinfo import filesystem_type, inotify_room, needs_polling, watch_limit_message

# Opening and reading files (the indexer's own reads) and attribute changes are not changes;
# leaving them out also keeps them out of the inotify mask.
EVENT_TYPES = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent,
               FileMovedEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent]
LIMIT_ERRNOS = (errno.ENOSPC, errno.EMFILE)
LIMIT_REASON = "the system's watch limit is reached"

# watchdog warns when a folder created during its own recursive walk is watched twice; it keeps
# one watch and loses nothing, so the warning is only noise on a person's terminal.
warnings.filterwarnings("ignore", message=r"Callback with id .* already exists",
                        category=RuntimeWarning, module=r"watchdog\.")

Emit = Callable[[str, str | None, str], None]  # (kind, root, message)


class _Handler(FileSystemEventHandler):
    def __init__(self, on_change: Callable[[FileSystemEvent], None]) -> None:
        self._on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._on_change(event)


class Observers:
    """One native and one polling observer, shared by every watched root."""

    def __init__(self, on_change: Callable[[FileSystemEvent], None], emit: Emit,
                 polling: bool | None, poll_interval: float) -> None:
        self._handler = _Handler(on_change)
        self._emit = emit
        self.polling = polling  # True: always; None: network/FUSE folders; False: never by choice
        self.poll_interval = poll_interval
        self._observers: dict[str, BaseObserver] = {}  # "native" | "polling"
        self._watches: dict[str, tuple[str, ObservedWatch]] = {}  # root -> (mode, watch)
        self.native_refused = False

    def mode(self, root: str) -> str | None:
        entry = self._watches.get(root)
        return entry[0] if entry else None

    def watch(self, root: str) -> None:
        why = self._polling_reason(root)
        if why is None:
            try:
                self._schedule("native", root)
                if inotify_room() is False:  # watchdog skips subfolders past the limit silently
                    self.unwatch(root)
                    raise OSError(errno.ENOSPC, "inotify watch limit reached")
                self._emit("watching", root, f"watching {root} for changes")
                return
            except OSError as e:
                if e.errno not in LIMIT_ERRNOS:
                    raise
                self.refuse_native(e, root)
                why = LIMIT_REASON
        self._schedule("polling", root)
        self._emit("watching", root, f"watching {root} by looking every "
                   f"{self.poll_interval:g} s ({why})")

    def _polling_reason(self, root: str) -> str | None:
        if self.polling:
            return "polling was asked for"
        if self.native_refused:
            return LIMIT_REASON
        if self.polling is None:
            fstype = filesystem_type(root)
            if needs_polling(fstype):
                return f"{fstype} folders send no change events"
        return None

    def refuse_native(self, err: OSError, root: str | None) -> None:
        """The system refuses more watches: say so, and poll every folder from now on."""
        self.native_refused = True
        self._emit("fallback", root,
                   f"{watch_limit_message(err)}; looking for changes by polling instead")
        for other, (mode, _) in list(self._watches.items()):
            if mode == "native":
                self.unwatch(other)
                self._schedule("polling", other)

    def check_limit(self) -> None:
        """A limit reached since (by this or another program) also ends native watching."""
        native = any(mode == "native" for mode, _ in self._watches.values())
        if native and inotify_room() is False:
            self.refuse_native(OSError(errno.ENOSPC, "inotify watch limit reached"), None)

    def _schedule(self, mode: str, root: str) -> None:
        observer = self._observers.get(mode)
        if observer is None:
            observer = (Observer() if mode == "native"
                        else PollingObserver(timeout=self.poll_interval))
            observer.start()
            self._observers[mode] = observer
        watch = observer.schedule(self._handler, root, recursive=True, event_filter=EVENT_TYPES)
        self._watches[root] = (mode, watch)

    def unwatch(self, root: str) -> None:
        entry = self._watches.pop(root, None)
        if entry is not None and entry[0] in self._observers:
            with contextlib.suppress(Exception):  # already gone with its folder
                self._observers[entry[0]].unschedule(entry[1])

    def alive(self, root: str) -> bool:
        """Is the folder still watched? A watch ends when its folder is deleted."""
        entry = self._watches.get(root)
        observer = self._observers.get(entry[0]) if entry else None
        if entry is None or observer is None or not observer.is_alive():
            return False
        return any(e.watch == entry[1] and e.is_alive() for e in list(observer.emitters))

    def close(self) -> None:
        for observer in self._observers.values():
            observer.stop()
        for observer in self._observers.values():
            with contextlib.suppress(RuntimeError):
                observer.join(10)
        self._observers.clear()
        self._watches.clear()
