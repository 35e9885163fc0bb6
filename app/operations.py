"""Library operations: the one place the app calls its library.

Every call runs off the UI thread (through ``Jobs``: the serial write lane for anything that
writes the catalog, the read lane otherwise). When an operation has changed the library,
``changed`` says what ("photos", "model" or "captions"), once, and the window refreshes counts
and results. Panels are handed this object (and the settings) rather than the main window. The
long jobs started from several places (adding or removing a folder, switching or upgrading the
model) also show their progress, with Cancel, in the status bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from engine.errors import Cancelled

from .statusbar import StatusBar
from .workers import Jobs, Worker

PHOTOS, MODEL, CAPTIONS = "photos", "model", "captions"
GROW_EVERY_S = 2.0  # while a folder is indexed, how often the window shows the photos so far


def pace(done: int, total: int, since: tuple[float, int] | None, now: float) -> str:
    """" · 4.2 photos/s · about 3 min left", once there is a rate to tell."""
    if since is None or now - since[0] < 1.0 or done <= since[1]:
        return ""
    rate = (done - since[1]) / (now - since[0])
    left = (total - done) / rate
    when = (f"about {left / 60:.0f} min left" if left >= 90 else
            f"about {max(5, round(left / 5) * 5):.0f} s left")
    return f"  ·  {rate:.1f} photos/s  ·  {when}"


class Operations(QObject):
    changed = Signal(str)  # what an operation changed: PHOTOS, MODEL or CAPTIONS
    indexing = Signal(str)  # what indexing is doing now; "" once it has ended
    growing = Signal()  # a folder being indexed has made more photos searchable already
    succeeded = Signal(str)  # a job that may have failed before worked this time

    def __init__(self, jobs: Jobs, statusbar: StatusBar, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.statusbar = statusbar
        self.library = None
        self._since: tuple[float, int] | None = None  # (time, photos done) of the first count
        self._grown = 0.0

    @property
    def ready(self) -> bool:
        return self.library is not None

    def call(self, operation: str | Callable[..., Any], *args, name: str = "",
             writes: bool = False, changes: str | None = None,
             done: Callable[[Any], None] | None = None, **kwargs) -> Worker | None:
        """Run a library method (by name) or ``operation(library, *args)`` off the UI thread.
        ``writes``: in the serial write lane; ``changes``: announced by ``changed`` once it has
        succeeded. The other keywords go to Jobs.submit (failed, progress, pass_progress,
        cancellable, log_failures) or to the call. None when no library is open yet."""
        if self.library is None:
            return None
        if isinstance(operation, str):
            fn, label = getattr(self.library, operation), operation.replace("_", " ")
        else:
            fn, label = operation, getattr(operation, "__name__", "job")
            args = (self.library, *args)

        def finished(result: Any) -> None:
            if done is not None:
                done(result)
            if changes is not None:
                self.changed.emit(changes)

        return self.jobs.submit(fn, *args, name=name or label,
                                lane="write" if writes else "read", done=finished, **kwargs)

    def report_error(self, job: str, exc: BaseException) -> None:
        """A failure the person should see (the window's banner)."""
        if self.jobs.on_error is not None:
            self.jobs.on_error(job, exc)

    def report_success(self, job: str) -> None:
        """The job worked: a failure of it still on show is out of date (the banner goes)."""
        self.succeeded.emit(job)

    # -- adding folders ---------------------------------------------------------------------------
    def add_folder(self, path: str) -> None:
        if self.library is None:
            return
        worker = self.call("add_folders", [path], name="add folder", writes=True,
                           pass_progress=True, cancellable=True,
                           progress=self._index_progress, done=self._index_done,
                           failed=self._index_failed)
        self.statusbar.start_activity("index", "Adding the folder…", worker.cancel)
        self.indexing.emit("Looking for photos…")

    def _index_progress(self, p) -> None:
        """An engine.progress.Progress event of indexing: the count, the pace and what is left;
        every few seconds the photos indexed so far are shown and searchable."""
        now = time.monotonic()
        if p.kind == "scanning":
            self._since, text = None, "Looking for photos…"
        else:
            if self._since is None:
                self._since = (now, p.done)
            text = (f"Indexing photos: {p.done:,} of {p.total:,}"
                    + pace(p.done, p.total, self._since, now))
        self.statusbar.update_activity("index", text, p.done, p.total)
        self.indexing.emit(text)
        if p.kind == "indexing" and p.done and now - self._grown >= GROW_EVERY_S:
            self._grown = now
            self.growing.emit()

    def _index_done(self, report) -> None:
        self.report_success("add folder")
        skipped = f", {len(report.skipped):,} skipped" if report.skipped else ""
        self._index_ended(f"{report.scanned:,} photos found: {report.added:,} added, "
                          f"{report.updated:,} updated, {report.removed:,} removed{skipped}")

    def _index_failed(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            self._index_ended("Indexing cancelled; the photos finished so far are kept.")
            return
        self._index_ended("")
        self.report_error("add folder", exc)

    def _index_ended(self, message: str) -> None:
        self.statusbar.end_activity("index", message)
        self.indexing.emit("")
        self.changed.emit(PHOTOS)

    # -- removing folders -------------------------------------------------------------------------
    def can_remove_folders(self) -> bool:
        return self.library is not None and hasattr(self.library, "remove_folder")

    def remove_folder(self, path: str) -> None:
        """Take a folder out of the library (its photos leave the catalog; files stay)."""
        if not self.can_remove_folders():
            return
        self.call("remove_folder", path, name="remove folder", writes=True,
                  done=lambda n: self._removed(path, n),
                  failed=lambda exc: self._remove_failed(exc))
        self.statusbar.start_activity("remove", "Removing the folder from the library…")

    def _removed(self, path: str, count: int) -> None:
        self.statusbar.end_activity("remove", f"{count:,} photos of {path} left the library; "
                                    "the files themselves are untouched.")
        self.changed.emit(PHOTOS)

    def _remove_failed(self, exc: BaseException) -> None:
        self.statusbar.end_activity("remove")
        self.report_error("remove folder", exc)

    # -- switching models -------------------------------------------------------------------------
    def activate_model(self, version: str,
                       done: Callable[[bool], None] | None = None) -> None:
        """Make ``version`` the active model (re-embedding photos it has no vectors for first).
        ``done(True)`` once it is active, ``done(False)`` if it failed or was cancelled."""
        self._switch("activate_model", version, f"Switching to model {version}…", done)

    def upgrade_model(self, tower: str | None = None,
                      done: Callable[[bool], None] | None = None) -> None:
        """Switch to the current bundled base model (engine Library.upgrade), as activating a
        model does: photos are re-embedded while search keeps the old vectors."""
        self._switch("upgrade", tower, "Upgrading the model…", done)

    def _switch(self, method: str, arg, text: str, done: Callable[[bool], None] | None) -> None:
        """A model switch (activate or upgrade) in the write lane, shown with Cancel."""
        if self.library is None:
            return
        worker = self.call(method, arg, name=method.replace("_", " "), writes=True,
                           pass_progress=True, cancellable=True,
                           progress=self._activate_progress,
                           done=lambda _r: self._activated(True, done),
                           failed=lambda exc: self._activate_failed(exc, done))
        self.statusbar.start_activity("activate", text, worker.cancel)

    def _activate_progress(self, p) -> None:
        if p.kind == "indexing":
            self.statusbar.update_activity(
                "activate", f"Switching models: re-embedding {p.done:,} of {p.total:,}",
                p.done, p.total)

    def _activated(self, ok: bool, done: Callable[[bool], None] | None) -> None:
        if ok:
            self.report_success("activate model")
        self.statusbar.end_activity("activate", "The model was switched." if ok else "")
        self.changed.emit(MODEL)
        if done is not None:
            done(ok)

    def _activate_failed(self, exc: BaseException, done) -> None:
        if not isinstance(exc, Cancelled):
            self.report_error("activate model", exc)
        self._activated(False, done)
