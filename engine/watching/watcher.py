"""Watched folders: filesystem events -> debounced batches -> one incremental pass per batch.

A watchdog observer reports changes under each watched folder. The watcher waits until nothing
has changed for a quiet period and every file written meanwhile has stopped growing, then runs one
incremental pass over the affected folders through the Library, on its one worker thread:
unchanged photos are only stat'ed, moved or renamed photos are matched by content hash and keep
their vectors and captions, deleted ones leave. Folders of several watched roots go through one
pass together, so a photo moved between them is still a move; a photo gone from a folder in a pass
over some of the library's folders is kept as missing until a later pass finds it elsewhere.

On start, a reconciliation pass catches what changed while nothing was watching. Network and FUSE
folders are polled (they send no change events), and so is everything once the system's watch
limit is reached. A folder that disappears (unplugged, unmounted, renamed away), or that the pass
finds empty although nothing was deleted from it (an unplugged disk's mount point), is reported and
left alone until it is back: its photos and captions stay in the catalog meanwhile.

Status goes to ``on_event`` as :class:`engine.progress.Progress` events of the job "watching"
(kinds: watching, indexing, indexed, unavailable, resumed, paused, removed, fallback (the watch
limit), error, stopped), called on the watcher's threads
(an app hands them to its GUI thread). No error inside the watcher stops it: each is reported.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING

from watchdog.events import FileSystemEvent

from ..errors import Cancelled, LibraryError
from ..indexer import IndexReport
from ..library import photo_folder
from ..progress import Emit, Progress
from .changes import ChangeBatch, ChangeFilter
from .observers import Observers

if TYPE_CHECKING:
    from ..library import Library

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchOptions:
    quiet: float = 1.0  # seconds without a change before a batch is indexed
    settle: float = 0.5  # how often a file that is still growing is looked at again
    polling: bool | None = None  # True: poll every folder; None: poll network/FUSE folders only
    poll_interval: float = 5.0
    recheck: float = 5.0  # how often missing folders and the watch limit are checked
    retry_max: float = 60.0  # longest wait before a failed pass is tried again


def summarize(report: IndexReport) -> str:
    # A file moved or deleted while the pass ran is not unusable: the next pass places it.
    skipped = sum(not why.startswith("file vanished") for why in report.skipped.values())
    missing = f", {report.missing} missing" if report.missing else ""
    away = len(report.unavailable)
    away = f", {away} unavailable folder{'s' * (away > 1)} left alone" if away else ""
    return (f"{report.added} added, {report.updated} updated, {report.moved} moved, "
            f"{report.removed} removed{missing}, {skipped} skipped "
            f"({report.embedded} embedded){away}")


def describe(event: Progress) -> str:
    """One line for a person: the counts of an indexed batch, else the event's message."""
    if event.kind == "indexed" and event.result is not None:
        where = event.path or ", ".join(event.folders)
        return f"{where}: {summarize(event.result)}"
    return event.message


def _resolve_roots(library: Library, folders: list[str | Path]) -> list[str]:
    if not folders:
        return library.folders()
    return sorted({str(photo_folder(f)) for f in folders})


class Watcher:
    """Keeps a library current with its folders until stopped (``start`` / ``stop``, or ``with``).

    ``folders``: the folders to watch; new ones are added to the library by the first pass.
    Default: the library's folders, following the library as it changes (folders added there,
    even to an empty library, are watched too). Either way a folder paused or removed in the
    library stops being watched.
    ``polling``: True polls every folder, None (default) polls only network and FUSE folders.
    """

    def __init__(self, library: Library, folders: Iterable[str | Path] | None = None, *,
                 on_event: Emit | None = None,
                 options: WatchOptions | None = None, polling: bool | None = None) -> None:
        self.library = library
        opts = options or WatchOptions()
        self.options = opts if polling is None else replace(opts, polling=polling)
        self._on_event = on_event
        folders = list(folders or [])
        self._follow = not folders  # the library's folders, whatever they become
        self._roots = _resolve_roots(library, folders)
        self._known: set[str] = set()  # roots the library holds (a first pass adds a new one)
        self._paused: set[str] = set()  # roots paused in the library: not watched
        self._filter = ChangeFilter(self._roots, str(library.root),
                                    library.config.indexing.exclude_globs)
        self._batch = ChangeBatch(self.options.quiet, self.options.settle)
        self._observers = Observers(self._on_fs_event, self._emit, self.options.polling,
                                    self.options.poll_interval)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unavailable: dict[str, str] = {}  # root -> why
        self._mounted: set[str] = set()  # roots seen as mount points
        self._emptied: dict[str, str] = {}  # roots a pass found empty but not emptied -> why
        self._added: SimpleQueue[str] = SimpleQueue()
        self._busy = True  # a pass is running, or the first one has not finished
        self._failures = 0
        self._current: tuple[str, ...] = ()
        self._last_progress = 0.0
        self._next_check = 0.0

    # -- public ---------------------------------------------------------------------------------
    @property
    def roots(self) -> list[str]:
        return list(self._roots)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def idle(self) -> bool:
        """Nothing waiting and nothing being indexed: the library matches what was seen."""
        return not self._busy and not self._batch.pending() and self._added.empty()

    def mode(self, root: str | Path) -> str | None:
        """How a folder is watched now: "native", "polling", "unavailable", "paused" or None."""
        root = str(Path(root).expanduser().resolve())
        if root in self._paused:
            return "paused"
        if root in self._unavailable:
            return "unavailable"
        return self._observers.mode(root)

    def start(self) -> Watcher:
        if self._thread is not None:
            raise LibraryError("this watcher was already started; make a new one")
        self._thread = threading.Thread(target=self._run, name="chikaku-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop watching; a pass in progress keeps the photos it finished."""
        self._stop.set()
        self._batch.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)  # (from a status callback it stops after the callback)

    def add_folder(self, folder: str | Path) -> None:
        """Watch one more folder (and index it into the library), from any thread."""
        self._added.put(_resolve_roots(self.library, [folder])[0])
        self._batch.wake()

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    # -- the worker thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._guard(self._begin)
            self._busy = False
            while not self._stop.is_set():
                self._guard(self._step)
        finally:
            self._busy = False
            self._observers.close()
            self._emit("stopped", message="stopped watching")

    def _guard(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Cancelled:
            pass
        except Exception as e:  # the watcher outlives every error, and each one is reported
            log.exception("watcher step failed")
            self._emit("error", message=f"{type(e).__name__}: {e}")
            self._stop.wait(self.options.settle)

    def _begin(self) -> None:
        self._sync()
        ready = []
        for root in self._roots:
            if root in self._paused:
                continue
            ok, why = self._available(root)
            if ok:
                self._try_watch(root)
                ready.append(root)
            else:
                self._lose(root, why)
        self._next_check = time.monotonic() + self.options.recheck
        self._index(ready)  # reconciliation: what changed while nothing was watching

    def _step(self) -> None:
        self._batch.wait(max(0.0, self._next_check - time.monotonic()))
        if self._stop.is_set():
            return
        self._busy = True  # until the step ends: what it took from the queues is not lost
        try:
            self._take_added()
            if time.monotonic() >= self._next_check:
                self._next_check = time.monotonic() + self.options.recheck
                self._check_roots()
            roots = self._batch.take()
            if roots:
                self._index(roots)
        finally:
            self._busy = False

    def _take_added(self) -> None:
        while True:
            try:
                root = self._added.get_nowait()
            except Empty:
                return
            if root not in self._roots:
                self._roots.append(root)
            self._start(root)

    def _check_roots(self) -> None:
        """Missing folders reported, returning ones resumed, dead watches renewed."""
        self._sync()
        for root in list(self._roots):
            if root in self._paused:
                continue
            ok, why = self._available(root)
            if root in self._unavailable:
                if ok:
                    del self._unavailable[root]
                    self._emit("resumed", root, f"{root} is back; catching up with its changes")
                    self._start(root)
            elif not ok:
                self._lose(root, why)
            elif not self._observers.alive(root):
                self._observers.unwatch(root)
                self._start(root)
        self._observers.check_limit()

    def _sync(self) -> None:
        """Follow the library: folders removed or paused there are no longer watched, resumed
        ones are again, and new ones are too when the watcher follows the library's folders."""
        folders = set(self.library.folders())
        paused = set(self.library.paused_folders())
        if self._follow:
            for root in sorted(folders - set(self._roots) - paused):
                self._roots.append(root)
                self._start(root)
        self._known |= folders & set(self._roots)
        for root in list(self._roots):
            if root in self._known and root not in folders:
                self._drop(root)
            elif root in paused and root not in self._paused:
                self._paused.add(root)
                self._unavailable.pop(root, None)
                self._observers.unwatch(root)
                self._emit("paused", root, f"{root} is paused: its changes wait until it is "
                           "resumed")
            elif root not in paused and root in self._paused:
                self._paused.discard(root)
                self._emit("resumed", root, f"{root} is resumed; catching up with its changes")
                self._start(root)

    def _drop(self, root: str) -> None:
        self._roots.remove(root)
        self._known.discard(root)
        self._paused.discard(root)
        self._unavailable.pop(root, None)
        self._observers.unwatch(root)
        self._emit("removed", root, f"{root} was taken out of the library; no longer watched")

    def _start(self, root: str) -> None:
        """Watch a folder (again) and index what changed in it."""
        ok, why = self._available(root)
        if not ok:
            self._lose(root, why)
            return
        if not self._observers.alive(root):
            self._try_watch(root)
        self._batch.note([root])

    def _try_watch(self, root: str) -> None:
        try:
            self._observers.watch(root)
        except Exception as e:  # tried again by the periodic check
            log.exception("cannot watch %s", root)
            self._emit("error", root, f"cannot watch {root}: {type(e).__name__}: {e}")

    # -- folders --------------------------------------------------------------------------------
    def _available(self, root: str) -> tuple[bool, str]:
        try:
            st = os.stat(root)
        except FileNotFoundError:
            return False, "is missing (removed, renamed or unplugged)"
        except OSError as e:
            return False, f"cannot be reached ({e.strerror or e})"
        if not stat.S_ISDIR(st.st_mode):
            return False, "is no longer a folder"
        if os.path.ismount(root):
            self._mounted.add(root)
        elif root in self._mounted:  # the empty mount point of an unmounted disk or share
            return False, "is no longer mounted"
        if root in self._emptied:  # as the last pass found it: back once it holds anything
            try:
                with os.scandir(root) as it:
                    empty = next(it, None) is None
            except OSError as e:
                return False, f"cannot be listed ({e.strerror or e})"
            if empty:
                return False, self._emptied[root]
            del self._emptied[root]
        return True, ""

    def _lose(self, root: str, why: str) -> None:
        if root in self._unavailable:
            return
        self._unavailable[root] = why
        self._observers.unwatch(root)
        self._emit("unavailable", root,
                   f"{root} {why}; its photos stay in the library until it is back")

    def _index(self, roots: list[str]) -> None:
        try:
            with self.library.writer.hold("indexing changes in watched folders"):
                self._sync()  # a folder removed or paused meanwhile is neither indexed nor re-added
                ready = [r for r in roots if r in self._roots and r not in self._paused
                         and self._still_there(r)]
                if ready:
                    self._pass(ready)
        except Cancelled:
            raise
        except Exception:
            self._failures += 1
            self._batch.note(roots, delay=min(self.options.retry_max, 2.0 ** self._failures))
            raise

    def _still_there(self, root: str) -> bool:
        ok, why = self._available(root)
        if not ok:
            self._lose(root, why)
        return ok

    def _pass(self, roots: list[str]) -> None:
        self._current = tuple(roots)
        self._emit("indexing", roots=roots, message=f"indexing {', '.join(roots)}")
        report = self.library.add_folders(roots, progress=self._progress, cancel=self._stop)
        self._failures = 0
        self._known.update(roots)
        self._emit("indexed", roots=roots, report=report, message=summarize(report))
        for folder in report.unavailable:
            if folder in self._roots:  # watched again when it holds something
                self._emptied[folder] = ("is empty, though nothing was deleted from it since "
                                         "its photos were indexed (an unplugged disk?)")
                self._lose(folder, self._emptied[folder])

    def _progress(self, p: Progress) -> None:
        now = time.monotonic()
        if p.kind != "indexing" or not p.total:
            return
        if p.done == p.total or now - self._last_progress >= 0.5:
            self._last_progress = now
            self._emit("indexing", roots=self._current, progress=(p.done, p.total),
                       message=f"indexing {p.done}/{p.total}")

    # -- events ---------------------------------------------------------------------------------
    def _on_fs_event(self, event: FileSystemEvent) -> None:
        """On the observer's thread: note which folders changed and which files were written."""
        try:
            roots, written = self._filter.classify(event)
            if roots:
                self._batch.note(roots, written)
        except Exception as e:  # an observer thread must never die of this
            self._emit("error", message=f"while noting a change: {type(e).__name__}: {e}")

    def _emit(self, kind: str, root: str | None = None, message: str = "", *,
              roots: Iterable[str] = (), report: IndexReport | None = None,
              progress: tuple[int, int] | None = None) -> None:
        roots = tuple(roots)
        if root is None and len(roots) == 1:
            root = roots[0]
        done, total = progress or (0, 0)
        event = Progress("watching", kind, done, total, message, path=root, folders=roots,
                         result=report)
        log.debug("%s %s", kind, describe(event))
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # the callback's own failure cannot be reported through it
            log.exception("the watch status callback failed on %r", event)
