"""The status bar: library size, progress of long jobs (with Cancel), and skipped files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QStatusBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)


@dataclass
class _Activity:
    text: str
    done: int
    total: int
    cancel: Callable[[], None] | None


class StatusBar(QStatusBar):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.skipped: list[tuple[str, str]] = []
        self._activities: dict[str, _Activity] = {}
        self._shown: str | None = None
        self.library_label = QLabel(self)
        self.activity_label = QLabel(self)
        self.progress = QProgressBar(self)
        self.progress.setFixedWidth(180)
        self.progress.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setFlat(True)
        self.cancel_button.clicked.connect(self._cancel_shown)
        self.skipped_button = QPushButton(self)
        self.skipped_button.setFlat(True)
        self.skipped_button.setToolTip("See which files were skipped and why")
        self.skipped_button.clicked.connect(self.show_skipped)
        self.addWidget(self.library_label)
        for w in (self.activity_label, self.progress, self.cancel_button, self.skipped_button):
            self.addPermanentWidget(w)
        self.set_skipped([])
        self._refresh()

    # -- library ----------------------------------------------------------------------------------
    def set_library(self, status) -> None:
        """Show an engine LibraryStatus: size, model, skipped files."""
        title = getattr(status, "model_title", "") or status.model_version
        model = f"  ·  {title}" if title else ""
        self.library_label.setToolTip(f"Model version {status.model_version}"
                                      if status.model_version else "")
        folders = len(status.folders)
        self.library_label.setText(
            f"{status.photos:,} photos in {folders} folder{'s' * (folders != 1)}{model}")
        self.set_skipped(status.skipped)

    def set_skipped(self, skipped: list[tuple[str, str]]) -> None:
        self.skipped = list(skipped)
        n = len(self.skipped)
        self.skipped_button.setText(f"{n:,} skipped file{'s' * (n != 1)}…")
        self.skipped_button.setVisible(n > 0)

    def show_skipped(self) -> None:
        SkippedDialog(self.skipped, self.window()).open()

    # -- jobs -------------------------------------------------------------------------------------
    def start_activity(self, key: str, text: str,
                       cancel: Callable[[], None] | None = None) -> None:
        self._activities[key] = _Activity(text, 0, 0, cancel)
        self._shown = key
        self._refresh()

    def update_activity(self, key: str, text: str, done: int = 0, total: int = 0) -> None:
        act = self._activities.get(key)
        if act is None:
            return
        act.text, act.done, act.total = text, done, total
        self._shown = key
        self._refresh()

    def end_activity(self, key: str, message: str = "") -> None:
        self._activities.pop(key, None)
        if self._shown == key:
            self._shown = next(iter(self._activities), None)
        self._refresh()
        if message:
            self.showMessage(message, 8000)

    def activity(self, key: str) -> tuple[str, int, int] | None:
        act = self._activities.get(key)
        return None if act is None else (act.text, act.done, act.total)

    def _refresh(self) -> None:
        act = self._activities.get(self._shown) if self._shown else None
        for w in (self.activity_label, self.progress):
            w.setVisible(act is not None)
        self.cancel_button.setVisible(act is not None and act.cancel is not None)
        if act is None:
            return
        self.activity_label.setText(act.text)
        self.progress.setRange(0, act.total if act.total > 0 else 0)  # 0..0: busy
        if act.total > 0:
            self.progress.setValue(min(act.done, act.total))

    def _cancel_shown(self) -> None:
        act = self._activities.get(self._shown) if self._shown else None
        if act is not None and act.cancel is not None:
            act.cancel()
            act.text = "Cancelling…"
            self._refresh()


class SkippedDialog(QDialog):
    """Every file that was not indexed, with the reason."""

    def __init__(self, skipped: list[tuple[str, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Skipped files")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(820, 420)
        intro = QLabel(f"{len(skipped):,} files could not be used as photos and were not "
                       "indexed. Everything else was.", self)
        intro.setWordWrap(True)
        self.table = QTableWidget(len(skipped), 2, self)
        self.table.setHorizontalHeaderLabels(["File", "Reason"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, (path, reason) in enumerate(skipped):
            self.table.setItem(row, 0, QTableWidgetItem(path))
            self.table.setItem(row, 1, QTableWidgetItem(reason))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.table.setColumnWidth(0, 440)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
