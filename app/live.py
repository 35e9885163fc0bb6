"""A live library: the engine's watcher keeps the open library current with its folders.

When the library opens, a watcher (engine.watching.watcher.Watcher) starts: its first pass
catches up with what changed while Chikaku was closed, then file-system events (polling for
network and FUSE folders) bring new photos in, re-embed edited ones, follow renamed and moved ones
(they keep their vectors and captions) and take deleted ones out. The watcher follows the
library's folders: a folder added, removed, paused or resumed there is followed without a word
from here.

Its status events arrive on its own threads and reach the GUI thread through one queued signal.
From them this object knows each folder's state (watching, polling, unavailable, paused,
indexing N of M), shows it in one line of the status bar, and, after a pass that changed photos,
makes the results on screen follow: a photo renamed or moved keeps its place under its new path
(in the preview too), a photo gone leaves the grid. New photos are searchable at once; the
results on screen stay put until the next search.

Passes take the library's writer lock; within this process the app's other writes wait for it
(the lock is re-entrant per thread and others queue behind it). When another process (a
background ``chikaku watch``) holds it, that is said once, the watcher keeps retrying, and the
window keeps up with the other process's changes by polling the catalog's generation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QLabel

from engine.errors import LibraryError
from engine.progress import Progress

log = logging.getLogger(__name__)

GENERATION_POLL_MS = 3000  # how often the catalog is asked whether another process changed it
ACTIVITY = "watch"  # the status bar's activity key for a watcher's pass


@dataclass(frozen=True)
class FolderState:
    kind: str  # watching | polling | unavailable | paused | indexing | starting | off | error
    text: str  # a few words for a person
    detail: str = ""  # the watcher's own sentence (why polled, why unavailable), for a tooltip


def other_writer(library) -> str | None:
    """What another process changing the library says about itself, or None when this process
    can write (the writer lock taken and let go at once). Runs in a worker."""
    try:
        with library.writer.hold("keeping the library current"):
            return None
    except LibraryError as e:
        return str(e)


def snapshot(library) -> tuple[int, list[str], list[str]]:
    """(the catalog's vectors generation, its folders, the paused ones). Runs in a worker."""
    return library.catalog.generation(), library.folders(), library.paused_folders()


def current_paths(library, ids: list[int]) -> dict[int, str | None]:
    """Each photo's path now, None for one that has left the library or is missing from its
    folder. Runs in a worker."""
    rows = library.catalog.photos_by_id(ids)
    return {pid: (rows[pid].path if pid in rows and rows[pid].status == "ok" else None)
            for pid in ids}


def _changed(report) -> bool:
    return report is None or bool(report.added or report.updated or report.moved
                                  or report.removed or report.missing)


class LiveLibrary(QObject):
    """Starts and stops the watcher of the open library and shows what it is doing.

    Handed the operations (every library call), the settings (``watch``), the status bar, and
    the results model and preview pane that follow renamed, moved and deleted photos.
    ``options``: the watcher's timings (engine.watching.watcher.WatchOptions); tests shorten them.
    """

    photos_changed = Signal()  # the library's photos changed (here or in another process)
    states_changed = Signal()  # a folder's state, or the one-line summary, changed
    _relay = Signal(object, object)  # (watcher, event) from the watcher's threads

    def __init__(self, ops, settings, statusbar, results, preview, options=None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ops, self.settings, self.statusbar = ops, settings, statusbar
        self.results, self.preview = results, preview
        self.options = options
        self.library = None
        self.watcher = None
        self._stopping: list = []  # watchers told to stop, joined when the window closes
        self.folders: list[str] = []
        self.paused: set[str] = set()
        self._unavailable: dict[str, str] = {}  # folder -> the watcher's sentence
        self._watching: dict[str, str] = {}  # folder -> how it is watched, in the watcher's words
        self._passing: tuple[tuple[str, ...], int, int] | None = None  # (folders, done, total)
        self.other: str | None = None  # another process holds the writer lock: its message
        self.error: str | None = None  # the watcher's last error, until a pass succeeds
        self._generation: int | None = None
        self._polling = False  # a generation poll is in flight
        self._relay.connect(self._on_event, Qt.ConnectionType.QueuedConnection)
        self.label = QLabel(statusbar)
        statusbar.addPermanentWidget(self.label)
        self.label.hide()
        self._timer = QTimer(self)
        self._timer.setInterval(GENERATION_POLL_MS)
        self._timer.timeout.connect(self.poll)

    # -- starting and stopping ---------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return bool(self.settings.watch)

    def start(self, library) -> None:
        """Keep ``library`` current from now on (a library opened, or switched to)."""
        if self.library is not None and library is not self.library:
            self.stop(wait=False)
        self.library = library
        self._generation = None
        self.other = self.error = None
        self._timer.setInterval(GENERATION_POLL_MS)
        self._timer.start()
        self.poll()
        if self.enabled:
            self._start_watcher()
        self._show()

    def _start_watcher(self) -> None:
        if self.library is None or self.watcher is not None:
            return
        from engine.watching.watcher import Watcher

        try:
            watcher = Watcher(self.library, on_event=lambda e: self._relay.emit(watcher, e),
                              options=self.options)
            watcher.start()
        except Exception as e:  # the window goes on without watching, and says why
            log.exception("cannot start watching")
            self.error = f"{type(e).__name__}: {e}"
            self.ops.report_error("watch folders", e)
            return
        self.watcher = watcher
        self.error = None
        self.ops.call(other_writer, name="check the writer lock", done=self._other_checked)
        self.states_changed.emit()

    def _stop_watcher(self) -> None:
        watcher, self.watcher = self.watcher, None
        if watcher is None:
            return
        watcher.stop(timeout=0)  # a pass in progress ends at its next photo
        self._stopping = [w for w in self._stopping if w.running] + [watcher]
        self._passing = None
        self._unavailable.clear()
        self._watching.clear()
        self.statusbar.end_activity(ACTIVITY)

    def set_enabled(self, on: bool) -> None:
        """Watching on or off (Settings → Library); the setting is saved with the others."""
        self.settings.watch = bool(on)
        if on:
            self._start_watcher()
        else:
            self._stop_watcher()
        self._show()

    def stop(self, wait: bool = True) -> None:
        """Stop watching (the window closes, or another library opens); ``wait``: until every
        watcher's thread has ended, so the library can be closed after this."""
        self._timer.stop()
        self._stop_watcher()
        if wait:
            for watcher in self._stopping:
                watcher.stop()
            self._stopping.clear()
        self._show()

    # -- folders ---------------------------------------------------------------------------------
    def rescan(self, folder: str) -> None:
        """Look at a folder again now: through the watcher when it watches it, else as adding
        the folder does (with its progress in the status bar)."""
        if self.watcher is not None and folder not in self.paused and self.other is None:
            self.watcher.add_folder(folder)  # its pass shows its progress
        else:
            self.ops.add_folder(folder)

    def set_paused(self, folder: str, paused: bool) -> None:
        """Pause a folder (its changes wait) or resume it (caught up at once)."""
        def done(_r) -> None:
            if paused:
                self.paused.add(folder)
            else:
                self.paused.discard(folder)
                if self.watcher is not None:
                    self.watcher.add_folder(folder)  # the watcher resumes it on this pass
            self._show()

        def failed(exc: BaseException) -> None:
            self.ops.report_error("pause the folder" if paused else "resume the folder", exc)
            self._show()

        self.ops.call("set_folder_paused", folder, paused, name="pause folder", writes=True,
                      done=done, failed=failed)

    def state(self, folder: str) -> FolderState:
        """What is happening to one folder of the library now."""
        if folder in self.paused:
            return FolderState("paused", "paused: its changes wait until it is resumed")
        if self.watcher is None:
            why = "watching could not start" if self.enabled else "watching is off in Settings"
            return FolderState("off", f"not watched ({why})", self.error or "")
        if self._passing is not None and (not self._passing[0] or folder in self._passing[0]):
            _f, done, total = self._passing
            text = f"indexing {done:,} of {total:,}" if total else "catching up…"
            return FolderState("indexing", text)
        if folder in self._unavailable:
            return FolderState("unavailable", "unavailable (unplugged, unmounted or gone); its "
                               "photos stay in the library", self._unavailable[folder])
        mode = self.watcher.mode(folder)
        if mode == "native":
            return FolderState("watching", "watching")
        if mode == "polling":
            return FolderState("polling", f"polling: looked at every "
                               f"{self.watcher.options.poll_interval:g} s (it sends no change "
                               "events)", self._watching.get(folder, ""))
        return FolderState("starting", "starting…")

    def summary(self) -> str:
        """The status bar's one line."""
        if self.library is None:
            return ""
        if self.other is not None:
            return "Read-only: another Chikaku process is changing this library"
        if self.watcher is None and self.enabled and self.error:
            return "Not watching the folders: a problem (see the tooltip)"
        if self.watcher is None:
            return "Watching is off" if self.folders else ""
        if self._passing is not None:
            return "Catching up with changes…"
        if not self.folders:
            return ""
        counts: dict[str, int] = {}
        for folder in self.folders:
            kind = self.state(folder).kind
            counts[kind] = counts.get(kind, 0) + 1
        live = counts.get("watching", 0) + counts.get("polling", 0)
        parts = [f"Watching {live} folder{'s' * (live != 1)}"]
        parts += [f"{counts[k]} {k}" for k in ("polling", "paused", "unavailable") if counts.get(k)]
        if self.error:
            parts.append("a problem (see the tooltip)")
        return ", ".join(parts[:1]) + (f" ({', '.join(parts[1:])})" if parts[1:] else "")

    def _show(self) -> None:
        text = self.summary()
        self.label.setText(text)
        self.label.setVisible(bool(text))
        tips = [f"{f}: {self.state(f).text}" for f in self.folders]
        if self.other:
            tips.insert(0, self.other)
        if self.error:
            tips.append(f"Last problem: {self.error}")
        self.label.setToolTip("\n".join(tips))
        self.states_changed.emit()

    # -- the watcher's events (GUI thread) ---------------------------------------------------------
    def _on_event(self, watcher, event: Progress) -> None:
        if watcher is not self.watcher:
            return  # a watcher told to stop, finishing
        kind, path = event.kind, event.path
        if kind == "indexing":
            self._pass_progress(event)
        elif kind == "indexed":
            self._passed(event)
        elif kind == "watching" and path:
            self._watching[path] = event.message
        elif kind == "unavailable" and path:
            self._unavailable[path] = event.message
        elif kind == "resumed" and path:
            self._unavailable.pop(path, None)
            self.paused.discard(path)
        elif kind == "paused" and path:
            self.paused.add(path)
        elif kind == "removed" and path:
            self._unavailable.pop(path, None)
            self.paused.discard(path)
            self.folders = [f for f in self.folders if f != path]
        elif kind == "fallback":
            self.statusbar.showMessage(event.message, 10000)
        elif kind == "error":
            self._failed(event)
        elif kind == "stopped":
            self.watcher = None
            self._passing = None
            self.statusbar.end_activity(ACTIVITY)
        self._show()

    def _pass_progress(self, event: Progress) -> None:
        folders = tuple(event.folders) or ((event.path,) if event.path else ())
        self._passing = (folders, event.done, event.total)
        text = (f"Catching up with changes: {event.done:,} of {event.total:,} photos"
                if event.total else "Catching up with changes in watched folders…")
        if self.statusbar.activity(ACTIVITY) is None:
            self.statusbar.start_activity(ACTIVITY, text)
        self.statusbar.update_activity(ACTIVITY, text, event.done, event.total)

    def _passed(self, event: Progress) -> None:
        from engine.watching.watcher import summarize

        self._passing = None
        self.error = None
        if self.other is not None:
            self.other = None
            self.statusbar.showMessage("Chikaku keeps this library current again.", 8000)
        report = event.result
        changed = _changed(report)
        self.statusbar.end_activity(ACTIVITY, f"Watched folders: {summarize(report)}"
                                    if changed and report is not None else "")
        if report is not None and report.updated:  # photos edited in place: new pictures
            self._edited()
        if changed:
            self.refresh()

    def _edited(self) -> None:
        """A pass re-embedded photos edited in place: the thumbnails on screen and the preview
        are loaded again (unchanged ones come from the thumbnail cache)."""
        hits = self.results.hits()
        self.results.loader.refresh({h.path for h in hits})
        shown = self.preview.current
        if shown is not None:
            hit = next((h for h in hits if h.photo_id == shown.photo_id), None)
            if hit is not None and hit.path == shown.path:
                self.preview.reload(hit)

    def _failed(self, event: Progress) -> None:
        self._passing = None
        self.statusbar.end_activity(ACTIVITY)
        self.error = event.message
        if self.library is not None:  # was it another process's lock? say so once
            self.ops.call(other_writer, name="check the writer lock", done=self._other_checked)

    def _other_checked(self, message: str | None) -> None:
        if message is not None and self.other is None:
            self.statusbar.showMessage(f"{message}. This window keeps working and shows its "
                                       "changes as they arrive.", 15000)
        if message is not None:
            self.error = None  # the watcher tries again until the other process has finished
        self.other = message
        self._show()

    # -- following the library's changes ------------------------------------------------------------
    def poll(self) -> None:
        """Ask the catalog whether its photos changed (another process, say); from the timer."""
        if self.library is None or self._polling:
            return
        self._polling = True
        self.ops.call(snapshot, name="check the library", log_failures=False,
                      done=self._polled, failed=self._poll_failed)

    def _poll_failed(self, exc: BaseException) -> None:
        self._polling = False
        log.debug("cannot check the library: %s", exc)

    def _polled(self, snap: tuple[int, list[str], list[str]]) -> None:
        self._polling = False
        generation, folders, paused = snap
        self.folders, self.paused = list(folders), set(paused)
        known, self._generation = self._generation, generation
        if known is not None and generation != known:
            self._follow()
        self._show()

    def refresh(self) -> None:
        """The photos changed: counts, and the results on screen follow their photos."""
        self.ops.call(snapshot, name="check the library", log_failures=False,
                      done=self._refreshed, failed=self._poll_failed)

    def _refreshed(self, snap) -> None:
        self._generation = snap[0]
        self.folders, self.paused = list(snap[1]), set(snap[2])
        self._follow()
        self._show()

    def _follow(self) -> None:
        self.photos_changed.emit()
        ids = sorted({h.photo_id for h in self.results.hits()})
        if ids:
            self.ops.call(current_paths, ids, name="follow the results", log_failures=False,
                          done=self._followed)

    def _followed(self, paths: dict[int, str | None]) -> None:
        changed = {}
        for hit in self.results.hits():
            if hit.photo_id not in paths:
                continue  # shown after the question was asked: looked at next time
            now = paths[hit.photo_id]
            if now is None:
                changed[hit.photo_id] = None
            elif now != hit.path:
                changed[hit.photo_id] = replace(hit, path=now)
        if not changed:
            return
        self.results.update_photos(changed)
        shown = self.preview.current
        if shown is not None and changed.get(shown.photo_id) is not None:
            self.preview.follow(changed[shown.photo_id])

