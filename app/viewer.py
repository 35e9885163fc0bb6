"""The photo large, in the window: Enter or a double-click on a result opens it, the arrows move
through the results (or the library) in the grid's order, and Esc goes back to the grid at the
photo last shown. Ctrl+Enter hands the photo to the program the system opens photos with."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from .preview import ImageView, load_preview


class Viewer(QWidget):
    closed = Signal(int)  # the row last shown: the grid goes back there
    open_outside = Signal(str)  # a path to hand to the system's viewer

    def __init__(self, ops, results, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ops = ops  # app.operations.Operations
        self.results = results  # app.results.ResultsModel: the rows the arrows move through
        self.row = -1
        self._generation = 0
        self.image = ImageView(self)
        self.image.setStyleSheet("background: #111; color: #ddd;")
        self.title = QLabel(self)
        self.where = QLabel(self)
        self.where.setStyleSheet("color: palette(placeholder-text);")
        back = QToolButton(self, text="← Back to the photos", autoRaise=True)
        back.setToolTip("Back to the grid (Esc)")
        back.clicked.connect(self.close_viewer)
        top = QHBoxLayout()
        top.addWidget(back)
        top.addWidget(self.title, 1)
        top.addWidget(self.where)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.image, 1)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        for keys, slot in ((Qt.Key.Key_Right, lambda: self.move_by(1)),
                           (Qt.Key.Key_Left, lambda: self.move_by(-1)),
                           (Qt.Key.Key_Home, lambda: self.show_row(0)),
                           (Qt.Key.Key_End, lambda: self.show_row(self.results.rowCount() - 1)),
                           (Qt.Key.Key_Escape, self.close_viewer),
                           (QKeySequence("Ctrl+Return"), self._open_outside)):
            action = QAction(self)
            action.setShortcut(QKeySequence(keys))
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            action.triggered.connect(slot)
            self.addAction(action)

    def show_row(self, row: int) -> None:
        """Show the photo of a row of the grid (clamped to the rows there are)."""
        count = self.results.rowCount()
        if count == 0:
            self.close_viewer()
            return
        self.row = max(0, min(row, count - 1))
        hit = self.results.hit(self.row)
        self._generation += 1
        gen = self._generation
        self.title.setText(os.path.basename(hit.path))
        when = f"{hit.date:%d %B %Y}  ·  " if hit.date else ""
        self.where.setText(f"{when}{self.row + 1:,} of {count:,}")
        self.image.set_image(None, "Loading…")
        self.ops.call(load_preview, hit, name="viewer",
                      done=lambda data: self._loaded(gen, data))
        self.setFocus(Qt.FocusReason.OtherFocusReason)

    def _loaded(self, gen: int, data) -> None:
        if gen == self._generation:
            self.image.set_image(data.image, data.problem or "")

    def move_by(self, step: int) -> None:
        if self.row >= 0:
            self.show_row(self.row + step)

    def close_viewer(self) -> None:
        self._generation += 1  # a picture still on its way is not wanted
        self.closed.emit(self.row)

    def _open_outside(self) -> None:
        hit = self.results.hit(self.row)
        if hit is not None:
            self.open_outside.emit(hit.path)
