"""The preview pane: the selected photo large and upright, its details, and its captions.

Captions are edited one per line and saved to the catalog through the serial write lane; edits
not yet saved are saved when another photo is selected.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from .operations import CAPTIONS
from .thumbs import to_qimage
from .workers import error_text

PREVIEW_SIDE = 1600


@dataclass
class PreviewData:
    photo_id: int
    path: str
    image: QImage | None = None
    problem: str | None = None
    date: datetime | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    captions: list[str] = field(default_factory=list)


def load_preview(library, hit) -> PreviewData:
    """Everything the pane shows about one hit. Runs in a worker."""
    from engine.errors import BadImage
    from engine.imageio import open_upright

    data = PreviewData(hit.photo_id, hit.path, date=hit.date, width=hit.width,
                       height=hit.height)
    data.captions = library.captions(hit.photo_id)
    try:
        data.bytes = os.stat(hit.path).st_size
        data.image = to_qimage(open_upright(Path(hit.path), max_side=PREVIEW_SIDE))
    except (BadImage, OSError) as e:
        data.problem = f"This photo cannot be shown: {error_text(e)}"
    return data


def _human_size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def show_in_folder(path: str) -> None:
    """Open the photo's folder in the file manager (with the photo selected where possible)."""
    if sys.platform == "darwin":
        subprocess.Popen(["open", "-R", path])
    elif sys.platform == "win32":
        subprocess.Popen(["explorer", "/select,", os.path.normpath(path)])
    else:
        QDesktopServices.openUrl(QUrl.fromLocalFile(os.path.dirname(path)))


class ImageView(QLabel):
    """A label that keeps its image fitted to its size."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setMinimumSize(QSize(200, 160))
        self.setWordWrap(True)

    def set_image(self, image: QImage | None, text: str = "") -> None:
        self._pixmap = QPixmap.fromImage(image) if image is not None else None
        self.setText(text if self._pixmap is None else "")
        self._fit()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if self._pixmap is None:
            return  # setText has already cleared any earlier picture
        self.setPixmap(self._pixmap.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation))


class PreviewPane(QWidget):
    find_similar = Signal(int)  # photo id
    message = Signal(str)  # a short note for the status bar

    def __init__(self, ops, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ops = ops  # app.operations.Operations
        self.current: PreviewData | None = None
        self._generation = 0
        self._saved_text: str | None = ""
        self._build()
        self.clear()
        ops.changed.connect(self._library_changed)

    def _build(self) -> None:
        self.image = ImageView(self)
        self.name = QLabel(self)
        self.name.setStyleSheet("font-weight: 600; font-size: 11pt;")
        self.path = QLabel(self)
        self.path.setWordWrap(True)
        self.path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.path.setStyleSheet("color: palette(placeholder-text);")
        self.details = QLabel(self)
        caption_label = QLabel("Captions (one per line), used to fine-tune search:", self)
        self.captions = QPlainTextEdit(self)
        self.captions.setPlaceholderText("Describe what the photo shows…")
        self.captions.setFixedHeight(96)
        self.captions.setAccessibleName("Captions")
        self.captions.textChanged.connect(self._edited)
        # Tab and Shift+Tab leave the editor (a tab typed into a caption is never wanted), and
        # Ctrl+S saves, as in any editor.
        self.captions.setTabChangesFocus(True)
        save = QAction("Save captions", self.captions)
        save.setShortcut(QKeySequence.StandardKey.Save)
        save.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        save.triggered.connect(self.save_if_edited)
        self.captions.addAction(save)
        self.save_button = QPushButton("Save captions", self)
        self.save_button.setToolTip("Save the captions (Ctrl+S)")
        self.save_button.clicked.connect(self.save_captions)
        self.open_button = QPushButton("Open", self)
        self.open_button.clicked.connect(self.open_photo)
        self.folder_button = QPushButton("Show in folder", self)
        self.folder_button.clicked.connect(self.show_folder)
        self.similar_button = QPushButton("Find similar", self)
        self.similar_button.clicked.connect(
            lambda: self.current and self.find_similar.emit(self.current.photo_id))
        self._lay_out(caption_label)

    def _lay_out(self, caption_label: QLabel) -> None:
        self.info = QWidget(self)  # everything under the picture, hidden while none is chosen
        info = QVBoxLayout(self.info)
        info.setContentsMargins(0, 0, 0, 0)
        for w in (self.name, self.path, self.details, caption_label, self.captions):
            info.addWidget(w)
        save_row = QHBoxLayout()
        save_row.addStretch(1)
        save_row.addWidget(self.save_button)
        info.addLayout(save_row)
        buttons = QHBoxLayout()
        for b in (self.open_button, self.folder_button, self.similar_button):
            buttons.addWidget(b)
        info.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 0, 0, 0)
        layout.addWidget(self.image, 1)
        layout.addWidget(self.info)

    # -- showing a photo --------------------------------------------------------------------------
    def clear(self) -> None:
        self._generation += 1
        self.current = None
        self.image.set_image(None, "Select a photo to see it here.")
        for label in (self.name, self.path, self.details):
            label.clear()
        self._set_captions([])
        self.info.hide()

    def show_hit(self, hit) -> None:
        if self.is_dirty():
            self.save_captions()
        if hit is None or not self.ops.ready:
            self.clear()
            return
        if self.current is not None and self.current.photo_id == hit.photo_id:
            return
        self._generation += 1
        gen = self._generation
        self.current = None
        self.name.setText(os.path.basename(hit.path))
        self.path.setText(hit.path)
        self.details.clear()
        self._set_captions([])
        self._set_controls(False)
        self.info.show()
        self.image.set_image(None, "Loading…")
        self.ops.call(load_preview, hit, name="preview",
                      done=lambda data: self._loaded(gen, data),
                      failed=lambda exc: self._load_failed(gen, exc))

    def _loaded(self, gen: int, data: PreviewData) -> None:
        if gen != self._generation:
            return
        self.current = data
        self.image.set_image(data.image, data.problem or "")
        parts = [f"{data.date:%d %B %Y, %H:%M}" if data.date else "no date",
                 f"{data.width} × {data.height}" if data.width else "",
                 _human_size(data.bytes)]
        self.details.setText("  ·  ".join(p for p in parts if p))
        self._set_captions(data.captions)
        self._set_controls(True)

    def follow(self, hit) -> None:
        """The photo shown was renamed or moved: show it under its new path (the picture and
        captions are its own still); Open and Show in folder use the new path."""
        if self.current is None or self.current.photo_id != hit.photo_id:
            return
        self.current.path = hit.path
        self.name.setText(os.path.basename(hit.path))
        self.path.setText(hit.path)

    def reload(self, hit) -> None:
        """The photo shown was edited on disk: show its new picture (not while its captions
        have edits not yet saved, which a reload would lose)."""
        if self.current is None or self.current.photo_id != hit.photo_id or self.is_dirty():
            return
        self.current = None
        self.show_hit(hit)

    def _set_controls(self, enabled: bool) -> None:
        for w in (self.captions, self.open_button, self.folder_button, self.similar_button):
            w.setEnabled(enabled)

    def _load_failed(self, gen: int, exc: BaseException) -> None:
        if gen == self._generation:
            self.image.set_image(None, f"This photo cannot be shown: {error_text(exc)}")

    # -- captions ---------------------------------------------------------------------------------
    def _set_captions(self, lines: list[str]) -> None:
        self._saved_text = "\n".join(lines)
        self.captions.setPlainText(self._saved_text)
        self.save_button.setEnabled(False)

    def _library_changed(self, what: str) -> None:
        """Captions changed elsewhere (an import, a mark right, a name added to captions): the
        photo shown gets them as they are now, so that saving it never puts back old ones. Not
        while its captions are being edited: those edits are the person's."""
        if what != CAPTIONS or self.current is None or self.is_dirty():
            return
        pid, gen = self.current.photo_id, self._generation

        def show(lines: list[str]) -> None:
            if gen == self._generation and not self.is_dirty() and lines != self.caption_lines():
                self._set_captions(lines)

        self.ops.call("captions", pid, name="captions", done=show)

    def caption_lines(self) -> list[str]:
        return [ln.strip() for ln in self.captions.toPlainText().splitlines() if ln.strip()]

    def is_dirty(self) -> bool:
        return self.current is not None and self.captions.toPlainText() != self._saved_text

    def _edited(self) -> None:
        self.save_button.setEnabled(self.is_dirty())

    def save_if_edited(self) -> None:
        if self.is_dirty():
            self.save_captions()

    def save_captions(self) -> None:
        if self.current is None or not self.ops.ready:
            return
        pid, lines = self.current.photo_id, self.caption_lines()
        self._saved_text = self.captions.toPlainText()
        self.save_button.setEnabled(False)
        self.ops.call("set_captions", pid, lines, name="save captions", writes=True,
                      changes=CAPTIONS, done=lambda _r: self.message.emit(
                          f"Captions saved ({len(lines)} for this photo)"),
                      failed=lambda exc: self._save_failed(pid, exc))

    def _save_failed(self, photo_id: int, exc: BaseException) -> None:
        if self.current is not None and self.current.photo_id == photo_id:
            self._saved_text = None  # the edits are still only on screen: offer to save again
            self.save_button.setEnabled(True)
        self.ops.report_error("save captions", exc)

    # -- opening ----------------------------------------------------------------------------------
    def open_photo(self) -> None:
        if self.current is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.current.path))

    def show_folder(self) -> None:
        if self.current is not None:
            show_in_folder(self.current.path)
