"""The search field, the images being searched with, and the filters under them.

An image query shows as a chip beside the field (a small thumbnail, the file name, a remove
button); words typed in the field add to it. A new image replaces the one there, unless it is
added on purpose (Shift or Ctrl held while dropping or choosing it, or "Add to the search").

Typing searches after a short pause (250 ms without a key); Enter searches at once. Folder and
dates are passed to the engine; minimum strength and sort order only re-arrange the results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, time

from PySide6.QtCore import QDate, QEvent, QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QImageReader, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDoubleSpinBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .results import SORT_DATE, SORT_RELEVANCE

DEBOUNCE_MS = 250
HINT = "Describe a photo, or drop one here  (e.g. beach + sunset - people)"


CHIP_SIDE = 26  # the chip's thumbnail, logical pixels


@dataclass(frozen=True)
class SearchRequest:
    text: str
    images: tuple[str, ...] = ()
    folder: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None

    @property
    def image(self) -> str | None:
        """The first image searched with (most searches have one at most)."""
        return self.images[0] if self.images else None

    def is_empty(self) -> bool:
        return not self.text.strip() and not self.images


def chip_pixmap(path: str, side: int, ratio: float) -> QPixmap | None:
    """A small picture of the image, decoded at the size shown (fast for a JPEG); None when Qt
    cannot read the file (the chip then shows its name alone)."""
    reader = QImageReader(path)
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and size.width() > 0 and size.height() > 0:
        pixels = round(side * ratio)
        reader.setScaledSize(size.scaled(QSize(pixels, pixels),
                                         Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    if image.isNull():
        return None
    pixmap = QPixmap.fromImage(image)
    pixmap.setDevicePixelRatio(ratio)
    return pixmap


class ImageChip(QFrame):
    """One image of the query: its thumbnail, its name, and a button that takes it out."""

    removed = Signal(str)

    def __init__(self, path: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.setObjectName("imageChip")
        self.setStyleSheet("QFrame#imageChip { background: palette(midlight); "
                           "border-radius: 6px; }")
        self.setToolTip(f"Searching with this image:\n{path}")
        self.setAccessibleName(f"Image: {os.path.basename(path)}")
        self.picture = QLabel(self)
        self.picture.setFixedSize(CHIP_SIDE, CHIP_SIDE)
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        pixmap = chip_pixmap(path, CHIP_SIDE, self.devicePixelRatioF())
        if pixmap is not None:
            self.picture.setPixmap(pixmap)
        else:
            self.picture.setText("🖼")
        name = os.path.basename(path)
        self.name = QLabel(name if len(name) <= 18 else f"{name[:8]}…{name[-8:]}", self)
        self.remove = QToolButton(self, text="✕", autoRaise=True)
        self.remove.setToolTip("Stop searching with this image")
        self.remove.setAccessibleName(f"Remove the image {name} from the search")
        self.remove.clicked.connect(lambda: self.removed.emit(self.path))
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 2, 2, 2)
        row.setSpacing(4)
        for w in (self.picture, self.name, self.remove):
            row.addWidget(w)


class SearchBar(QWidget):
    search_requested = Signal(object)  # SearchRequest
    presentation_changed = Signal()  # minimum strength or sort order
    paste_requested = Signal()  # Ctrl+V in the field while the clipboard holds an image
    leave_down = Signal()  # the Down arrow in the field: move into the results

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.images: list[str] = []
        self.clipboard_has_image = lambda: False
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._timer.timeout.connect(self.search_now)
        self._build_field()
        self._build_filters()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._top)
        layout.addLayout(self._filters)

    def _build_field(self) -> None:
        self.field = QLineEdit(self)
        self.field.setPlaceholderText(HINT)
        self.field.setClearButtonEnabled(True)
        self.field.setAccessibleName("Search")
        self.field.setMinimumHeight(34)
        self.field.setStyleSheet("QLineEdit { font-size: 12pt; padding: 2px 6px; }")
        self.field.textEdited.connect(lambda _t: self._timer.start())
        self.field.returnPressed.connect(self.search_now)
        self.field.installEventFilter(self)
        self.chip_row = QHBoxLayout()  # one chip per image of the query
        self.chip_row.setSpacing(4)
        self.open_button = QPushButton("Search with image…", self)
        self.open_button.setToolTip("Choose an image to search with (hold Shift to add it to "
                                    "the image already there)")
        self.settings_button = QPushButton("Settings", self)
        self._top = QHBoxLayout()
        self._top.addLayout(self.chip_row)
        for w in (self.field, self.open_button, self.settings_button):
            self._top.addWidget(w, 1 if w is self.field else 0)

    def _build_filters(self) -> None:
        self.folder = QComboBox(self)
        self.folder.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.folder.setAccessibleName("Folder")
        self.set_folders([])
        self.dates = QCheckBox("Taken between", self)
        today = QDate.currentDate()
        self.date_from = QDateEdit(today.addYears(-1), self, calendarPopup=True)
        self.date_to = QDateEdit(today, self, calendarPopup=True)
        for d in (self.date_from, self.date_to):
            d.setDisplayFormat("yyyy-MM-dd")
            d.setEnabled(False)
            d.dateChanged.connect(self._filters_changed)
        self.dates.toggled.connect(self._dates_toggled)
        self.folder.currentIndexChanged.connect(self._filters_changed)
        self.min_score_box = QDoubleSpinBox(self, minimum=0.0, maximum=1.0, singleStep=0.05,
                                            decimals=2, specialValueText="any")
        self.min_score_box.setToolTip("How well a photo must match, the same scale for every "
                                      "query: 0.5 a likely match, 0.8 a strong one")
        self.min_score_box.valueChanged.connect(self.presentation_changed)
        self.sort_box = QComboBox(self)
        self.sort_box.addItem("Best match first", SORT_RELEVANCE)
        self.sort_box.addItem("Newest first", SORT_DATE)
        self.sort_box.currentIndexChanged.connect(self.presentation_changed)
        self._filters = QHBoxLayout()
        for w in (QLabel("Folder", self), self.folder, self.dates, self.date_from,
                  QLabel("and", self), self.date_to, QLabel("Minimum strength", self),
                  self.min_score_box, QLabel("Sort", self), self.sort_box):
            self._filters.addWidget(w)
        self._filters.addStretch(1)

    # -- state ------------------------------------------------------------------------------------
    def request(self) -> SearchRequest:
        date_from = date_to = None
        if self.dates.isChecked():
            date_from = datetime.combine(self.date_from.date().toPython(), time.min)
            date_to = datetime.combine(self.date_to.date().toPython(), time.max)
        return SearchRequest(self.field.text().strip(), tuple(self.images),
                             self.folder.currentData(), date_from, date_to)

    def min_score(self) -> float | None:
        value = self.min_score_box.value()
        return None if value <= self.min_score_box.minimum() else value

    def sort_key(self) -> str:
        return self.sort_box.currentData()

    def set_folders(self, folders: list[str]) -> None:
        current = self.folder.currentData()
        self.folder.blockSignals(True)
        self.folder.clear()
        self.folder.addItem("All folders", None)
        for f in folders:
            self.folder.addItem(os.path.basename(f.rstrip(os.sep)) or f, f)
            self.folder.setItemData(self.folder.count() - 1, f, Qt.ItemDataRole.ToolTipRole)
        index = self.folder.findData(current)
        self.folder.setCurrentIndex(max(index, 0))
        self.folder.blockSignals(False)

    def set_searchable(self, on: bool) -> None:
        """Nothing to search in an empty library: the field and filters wait for photos."""
        for w in (self.field, self.open_button, self.folder, self.dates, self.min_score_box,
                  self.sort_box):
            w.setEnabled(on)

    @property
    def image(self) -> str | None:
        return self.images[0] if self.images else None

    def chips(self) -> list[ImageChip]:
        """The chips shown, in the query's order."""
        return [self.chip_row.itemAt(i).widget() for i in range(self.chip_row.count())]

    def set_image(self, path: str | None, search: bool = False, add: bool = False) -> None:
        """Search with this image (with any words typed as well), in place of the one there or,
        with ``add``, beside it; None stops searching with images."""
        if path is None:
            self.images = []
        elif add:
            if path not in self.images:
                self.images.append(path)
        else:
            self.images = [path]
        self._show_chips()
        if search:
            self.search_now()

    def remove_image(self, path: str) -> None:
        if path in self.images:
            self.images.remove(path)
            self._show_chips()
            self.search_now()  # with nothing left, the library again

    def _show_chips(self) -> None:
        shown = [c.path for c in self.chips()]
        if shown == self.images:
            return
        while self.chip_row.count():
            widget = self.chip_row.takeAt(0).widget()
            widget.hide()
            widget.deleteLater()
        for path in self.images:
            chip = ImageChip(path, self)
            chip.removed.connect(self.remove_image)
            self.chip_row.addWidget(chip)

    def set_query(self, text: str) -> None:
        """Replace the query's words, without an image, and search at once."""
        self.field.setText(text)
        self.set_image(None)
        self.search_now()

    def search_now(self) -> None:
        self._timer.stop()
        self.search_requested.emit(self.request())

    # -- events -----------------------------------------------------------------------------------
    def _filters_changed(self, *_args) -> None:
        if not self.request().is_empty():
            self.search_now()

    def _dates_toggled(self, on: bool) -> None:
        self.date_from.setEnabled(on)
        self.date_to.setEnabled(on)
        self._filters_changed()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if obj is self.field and event.type() == QEvent.Type.KeyPress:
            if event.matches(QKeySequence.StandardKey.Paste) and self.clipboard_has_image():
                self.paste_requested.emit()
                return True
            if event.key() == Qt.Key.Key_Down:
                self.leave_down.emit()
                return True
            if event.key() == Qt.Key.Key_Backspace and not self.field.cursorPosition() \
                    and not self.field.hasSelectedText() and self.images:
                self.remove_image(self.images[-1])  # as in a field of tags: the chip before
                return True
            if event.key() == Qt.Key.Key_Escape and (self.field.text() or self.images):
                self.clear_query()  # back to the whole library
                return True
        return super().eventFilter(obj, event)

    def clear_query(self) -> None:
        """No words and no image: the window shows the library again."""
        self.field.clear()
        self.set_image(None)
        self.search_now()
