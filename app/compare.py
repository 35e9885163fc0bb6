"""The before/after panel of the Fine-tuning tab: for three of the person's own held-out captions,
the top photos by the model in use before and by the new one, so the difference can be seen.
The photo each caption was written for is framed in green wherever it appears."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from .thumbs import load_thumbnail

SIDE = 64  # thumbnails, logical pixels
TOP = 4  # photos per model and caption
RIGHT = QColor("#2e9d4f")


def compare_job(library, before: str, after: str) -> tuple[list, dict[str, QImage]]:
    """(runs in a worker) The engine's examples and a small picture of every photo in them."""
    from engine.compare import side_by_side

    examples = side_by_side(library, before, after, n=3, k=TOP)
    cache = library.root / "cache" / "thumbs"
    images: dict[str, QImage] = {}
    for ex in examples:
        for _pid, path in [*ex.before, *ex.after]:
            if path not in images:
                try:
                    images[path] = load_thumbnail(path, cache).scaled(
                        SIDE * 2, SIDE * 2, Qt.AspectRatioMode.KeepAspectRatioByExpanding,
                        Qt.TransformationMode.SmoothTransformation)
                except Exception:  # noqa: BLE001 (a photo gone or unreadable: a blank tile)
                    images[path] = QImage()
    return examples, images


def _tile(image: QImage, right: bool, ratio: float) -> QPixmap:
    pixmap = QPixmap(round(SIDE * ratio), round(SIDE * ratio))
    pixmap.setDevicePixelRatio(ratio)
    pixmap.fill(QColor("#d9dce1"))
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    if not image.isNull():  # the middle of the photo, filling the square
        side = min(image.width(), image.height())
        source = QRectF((image.width() - side) / 2, (image.height() - side) / 2, side, side)
        painter.drawImage(QRectF(0, 0, SIDE, SIDE), image, source)  # logical pixels
    if right:
        painter.setPen(QPen(RIGHT, 4))
        painter.drawRect(2, 2, SIDE - 4, SIDE - 4)
    painter.end()
    return pixmap


class CompareView(QWidget):
    """Rows of captions, each with the earlier model's top photos and the new model's."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.examples: list = []
        self.title = QLabel(self)
        self.title.setWordWrap(True)
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(6)
        self.grid.setColumnStretch(TOP + 1, 1)  # the tiles side by side, at the left
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addLayout(self.grid)
        self.clear()

    def clear(self, text: str = "") -> None:
        self.examples = []
        while self.grid.count():
            widget = self.grid.takeAt(0).widget()
            widget.hide()
            widget.deleteLater()
        self.title.setText(text)
        self.setVisible(bool(text))

    def tiles(self, row: int, model: str) -> list[QLabel]:
        """The thumbnails of one caption's results by "before" or "after" (tests read them)."""
        return [w for w in self.findChildren(QLabel)
                if w.property("example") == row and w.property("model") == model]

    def show_examples(self, result: tuple[list, dict[str, QImage]]) -> None:
        examples, images = result
        self.clear("Three of your held-out captions, searched with each model (the photo "
                   "each was written for is framed in green):" if examples else
                   "No held-out captions to show the two models on.")
        self.examples = examples
        ratio = self.devicePixelRatioF()
        row = 0
        for n, ex in enumerate(examples):
            caption = QLabel(f"“{ex.caption}”", self)
            caption.setWordWrap(True)
            caption.setStyleSheet("QLabel { font-style: italic; }")
            self.grid.addWidget(caption, row, 0, 1, TOP + 1)
            row += 1
            for model, hits, rank in (("before", ex.before, ex.before_rank),
                                      ("after", ex.after, ex.after_rank)):
                where = f"#{rank}" if rank else f"not in top {TOP}"
                label = QLabel(f"{'Before' if model == 'before' else 'New'}: {where}", self)
                self.grid.addWidget(label, row, 0)
                for col, (pid, path) in enumerate(hits, 1):
                    tile = QLabel(self)
                    tile.setFixedSize(SIDE, SIDE)  # never squeezed by a short window
                    tile.setPixmap(_tile(images.get(path, QImage()), pid == ex.photo_id, ratio))
                    tile.setToolTip(path)
                    tile.setProperty("example", n)
                    tile.setProperty("model", model)
                    tile.setProperty("right", pid == ex.photo_id)
                    tile.setAlignment(Qt.AlignmentFlag.AlignCenter)
                    self.grid.addWidget(tile, row, col)
                row += 1
        self.layout().activate()  # its new minimum height, for the scroll area around it
        self.updateGeometry()
