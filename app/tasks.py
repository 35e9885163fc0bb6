"""Long library jobs started from several places: adding a folder and switching models.

Both write the catalog, so both go through the serial write lane; both show their progress (with
Cancel) in the status bar. When one ends, ``changed`` tells the window to refresh counts and
results.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from engine.errors import Cancelled

from .statusbar import StatusBar
from .workers import Jobs


class LibraryTasks(QObject):
    changed = Signal()  # the photos or the active model changed
    indexing = Signal(str)  # what indexing is doing now; "" once it has ended

    def __init__(self, jobs: Jobs, statusbar: StatusBar, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.statusbar = statusbar
        self.library = None

    # -- adding folders ---------------------------------------------------------------------------
    def add_folder(self, path: str) -> None:
        if self.library is None:
            return
        worker = self.jobs.submit(self.library.add_folders, [path], name="add folder",
                                  lane="write", pass_progress=True, cancellable=True,
                                  progress=self._index_progress, done=self._index_done,
                                  failed=self._index_failed)
        self.statusbar.start_activity("index", "Adding the folder…", worker.cancel)
        self.indexing.emit("Looking for photos…")

    def _index_progress(self, p) -> None:
        text = ("Looking for photos…" if p.kind == "scanning" else
                f"Indexing photos: {p.done:,} of {p.total:,}")
        self.statusbar.update_activity("index", text, p.done, p.total)
        self.indexing.emit(text)

    def _index_done(self, report) -> None:
        skipped = f", {len(report.skipped):,} skipped" if report.skipped else ""
        self._index_ended(f"{report.scanned:,} photos found: {report.added:,} added, "
                          f"{report.updated:,} updated, {report.removed:,} removed{skipped}")

    def _index_failed(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            self._index_ended("Indexing cancelled; the photos finished so far are kept.")
            return
        self._index_ended("")
        if self.jobs.on_error is not None:
            self.jobs.on_error("add folder", exc)

    def _index_ended(self, message: str) -> None:
        self.statusbar.end_activity("index", message)
        self.indexing.emit("")
        self.changed.emit()

    # -- removing folders -------------------------------------------------------------------------
    def can_remove_folders(self) -> bool:
        return self.library is not None and hasattr(self.library, "remove_folder")

    def remove_folder(self, path: str) -> None:
        """Take a folder out of the library (its photos leave the catalog; files stay)."""
        if not self.can_remove_folders():
            return
        self.jobs.submit(self.library.remove_folder, path, name="remove folder", lane="write",
                         done=lambda n: self._removed(path, n),
                         failed=lambda exc: self._remove_failed(exc))
        self.statusbar.start_activity("remove", "Removing the folder from the library…")

    def _removed(self, path: str, count: int) -> None:
        self.statusbar.end_activity("remove", f"{count:,} photos of {path} left the library; "
                                    "the files themselves are untouched.")
        self.changed.emit()

    def _remove_failed(self, exc: BaseException) -> None:
        self.statusbar.end_activity("remove")
        if self.jobs.on_error is not None:
            self.jobs.on_error("remove folder", exc)

    # -- switching models -------------------------------------------------------------------------
    def activate_model(self, version: str,
                       done: Callable[[bool], None] | None = None) -> None:
        """Make ``version`` the active model (re-embedding photos it has no vectors for first).
        ``done(True)`` once it is active, ``done(False)`` if it failed or was cancelled."""
        if self.library is None:
            return
        worker = self.jobs.submit(self.library.activate_model, version, name="activate model",
                                  lane="write", pass_progress=True, cancellable=True,
                                  progress=self._activate_progress,
                                  done=lambda _r: self._activated(True, done),
                                  failed=lambda exc: self._activate_failed(exc, done))
        self.statusbar.start_activity("activate", f"Switching to model {version}…",
                                      worker.cancel)

    def upgrade_model(self, tower: str | None = None,
                      done: Callable[[bool], None] | None = None) -> None:
        """Switch to the current bundled base model (engine Library.upgrade), as activating a
        model does: photos are re-embedded while search keeps the old vectors."""
        if self.library is None:
            return
        worker = self.jobs.submit(self.library.upgrade, tower, name="upgrade model",
                                  lane="write", pass_progress=True, cancellable=True,
                                  progress=self._activate_progress,
                                  done=lambda _r: self._activated(True, done),
                                  failed=lambda exc: self._activate_failed(exc, done))
        self.statusbar.start_activity("activate", "Upgrading the model…", worker.cancel)

    def _activate_progress(self, p) -> None:
        if p.kind == "indexing":
            self.statusbar.update_activity(
                "activate", f"Switching models: re-embedding {p.done:,} of {p.total:,}",
                p.done, p.total)

    def _activated(self, ok: bool, done: Callable[[bool], None] | None) -> None:
        self.statusbar.end_activity("activate", "The model was switched." if ok else "")
        self.changed.emit()
        if done is not None:
            done(ok)

    def _activate_failed(self, exc: BaseException, done) -> None:
        if not isinstance(exc, Cancelled) and self.jobs.on_error is not None:
            self.jobs.on_error("activate model", exc)
        self._activated(False, done)
