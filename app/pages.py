"""Small pieces of the main window that are not the grid: the loading page, the empty-library
page, the centred notice shown instead of an empty grid, and the error banner."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .workers import error_text

WHAT_FAILED = {
    "open library": "Could not open the library",
    "add folder": "Could not add the folder",
    "remove folder": "Could not remove the folder",
    "save captions": "Could not save the captions",
    "search": "Could not search",
    "activate model": "Could not switch models",
    "train": "Fine-tuning failed",
    "paste image": "Could not use the pasted image",
    "import captions": "Could not import the captions",
    "exclude photos": "Could not leave those photos out",
    "keep the library current": "Could not set up keeping the library current",
    "save the settings": "Could not save the settings",
    "watch folders": "Could not watch the library's folders for changes",
    "pause the folder": "Could not pause the folder",
    "resume the folder": "Could not resume the folder",
}


COLUMN = 560  # width of the centred column of text on the loading and empty pages


def _centred(parent: QWidget, *widgets: QWidget) -> None:
    """Stack the widgets in a fixed-width column in the middle of the page (a fixed width lets
    wrapped text take the height it needs)."""
    column = QWidget(parent)
    column.setFixedWidth(COLUMN)
    inner = QVBoxLayout(column)
    inner.setSpacing(14)
    for w in widgets:
        if isinstance(w, QLabel):
            w.setAlignment(Qt.AlignmentFlag.AlignCenter)
            w.setWordWrap(True)
            inner.addWidget(w)
        else:
            inner.addWidget(w, 0, Qt.AlignmentFlag.AlignHCenter)
    row = QHBoxLayout()  # stretches, not an alignment flag, so the text's height follows
    row.addStretch(1)    # its width
    row.addWidget(column)
    row.addStretch(1)
    outer = QVBoxLayout(parent)
    outer.addStretch(1)
    outer.addLayout(row)
    outer.addStretch(2)


class LoadingPage(QWidget):
    """Shown while the library (and its model) opens in the background."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel("Opening your library…", self)
        self.label.setStyleSheet("font-size: 14pt;")
        self.busy = QProgressBar(self)
        self.busy.setRange(0, 0)
        self.busy.setFixedWidth(240)
        _centred(self, self.label, self.busy)

    def show_problem(self, text: str) -> None:
        self.label.setText(text)
        self.busy.hide()


class EmptyState(QWidget):
    """Shown instead of an empty grid when the library has no photos yet."""

    add_folder = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("Add a folder of photos", self)
        title.setStyleSheet("font-size: 18pt; font-weight: 600;")
        self.text = QLabel(
            "Chikaku reads the photos in the folders you add and then finds them by what they "
            "show: type “two dogs playing in the snow”, or drop a photo to find similar ones. "
            "Everything stays on this computer.", self)
        self.button = QPushButton("Add a folder of photos…", self)
        self.button.setDefault(True)
        self.button.setMinimumHeight(36)
        self.button.clicked.connect(self.add_folder)
        self.progress = QLabel(self)
        _centred(self, title, self.text, self.button, self.progress)

    def set_busy(self, text: str) -> None:
        """While the first folder is being indexed."""
        self.progress.setText(text)
        self.button.setEnabled(not text)


class Notice(QLabel):
    """A centred line of grey text in place of the grid ("no photos match", hints)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.setStyleSheet("color: palette(placeholder-text); font-size: 13pt; padding: 40px;")


class Banner(QFrame):
    """A dismissable message across the top of the window (errors, never tracebacks)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setStyleSheet("#banner { background: #fdecea; border: 1px solid #f5c2bd; "
                           "border-radius: 4px; } #banner QLabel { color: #7a1d12; }")
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(self, text="✕", autoRaise=True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        self.job: str | None = None  # the job whose failure is shown
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_failure(self, job: str, exc: BaseException) -> None:
        """What failed, in words, and the error's own message (never a traceback)."""
        self.show_message(f"{WHAT_FAILED.get(job, 'Something went wrong')}: {error_text(exc)}")
        self.job = job

    def show_message(self, text: str) -> None:
        self.label.setText(text)
        self.job = None
        self.show()

    def succeeded(self, job: str) -> None:
        """The job whose failure is shown has now worked: the message is out of date."""
        if self.job == job and self.isVisible():
            self.hide()
            self.job = None

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""
