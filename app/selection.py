"""What a person can do with the photos selected in the grid: copy them to a folder, copy them
(as files, for a file manager or a mail) or their paths, open them, show them in their folder.

Dragging them out to another program is the grid's own (``ResultsModel.mimeData``).
"""

from __future__ import annotations

import os

from PySide6.QtCore import QObject
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QWidget

from engine.export import copy_photos

from .preview import show_in_folder
from .results import ResultsView, files_mime
from .workers import error_text

OPEN_AT_ONCE = 20  # more photos than this at once would flood the screen with windows


class SelectionActions(QObject):
    def __init__(self, grid: ResultsView, ops, open_outside, parent: QWidget) -> None:
        super().__init__(parent)
        self.grid = grid
        self.ops = ops
        self.open_outside = open_outside
        self.window = parent
        self.last_folder = ""

    def paths(self) -> list[str]:
        return [h.path for h in self.grid.selected_hits()]

    def _say(self, text: str, ms: int = 8000) -> None:
        self.ops.statusbar.showMessage(text, ms)

    def copy_to_folder(self, folder: str | None = None) -> None:
        """Copy the selected photos into a folder (asked for when not given); the status bar
        says how many were copied and which could not be, and why."""
        paths = self.paths()
        if not paths:
            self._say("Select the photos to copy first.", 5000)
            return
        if folder is None:
            n = len(paths)
            folder = QFileDialog.getExistingDirectory(
                self.window, f"Copy {n:,} photo{'s' if n != 1 else ''} to a folder",
                self.last_folder)
            if not folder:
                return
        self.last_folder = folder
        self.ops.statusbar.start_activity("copy", f"Copying {len(paths):,} photos…")

        def done(report) -> None:
            self.ops.statusbar.end_activity("copy")
            self._say(f"{report.summary()}.", 15000)

        def failed(exc: BaseException) -> None:
            self.ops.statusbar.end_activity("copy")
            self._say(f"Could not copy the photos: {error_text(exc)}", 15000)

        self.ops.jobs.submit(copy_photos, paths, folder, name="copy photos", done=done,
                             failed=failed, log_failures=False)

    def copy(self) -> None:
        """The selected photos on the clipboard, as files (paste them in a file manager or a
        mail) and as their paths (paste them in a text)."""
        paths = self.paths()
        if paths:
            QGuiApplication.clipboard().setMimeData(files_mime(paths))
            self._say(f"Copied {len(paths):,} photo{'s' if len(paths) != 1 else ''}.", 4000)

    def copy_paths(self) -> None:
        paths = self.paths()
        if paths:
            QGuiApplication.clipboard().setText("\n".join(paths))
            self._say(f"Copied {len(paths):,} path{'s' if len(paths) != 1 else ''}.", 4000)

    def open_all(self) -> None:
        paths = self.paths()
        for path in paths[:OPEN_AT_ONCE]:
            self.open_outside(path)
        if len(paths) > OPEN_AT_ONCE:
            self._say(f"Opened the first {OPEN_AT_ONCE} of the {len(paths):,} photos "
                      "selected.", 8000)

    def show_in_folders(self) -> None:
        """Each folder the selection comes from, once."""
        firsts = {}
        for path in self.paths():
            firsts.setdefault(os.path.dirname(path), path)
        for path in list(firsts.values())[:OPEN_AT_ONCE]:
            show_in_folder(path)
