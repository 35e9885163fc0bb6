"""The results grid: a list model over a search's hits and the icon-mode view that shows it.

The model holds every hit of the current query (tens of thousands are fine) and asks for a
thumbnail only when the view asks for a row's icon, which a ``QListView`` with uniform item sizes
does for the visible rows alone. Minimum strength and sort order are presentation: they
re-arrange the hits the engine returned and never search again. A search brings its likely
matches; "Show more" appends the next page (``add_hits``).
"""

from __future__ import annotations

import os
from datetime import datetime

from PySide6.QtCore import (
    QAbstractListModel,
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    QUrl,
)
from PySide6.QtGui import QColor, QIcon, QPainter, QPalette, QPen, QPixmap, QPolygon
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from .thumbs import ICON_SIDE, ICON_SIDES, ThumbnailLoader

SORT_RELEVANCE = "relevance"
SORT_DATE = "date"
ICON = QSize(ICON_SIDE, ICON_SIDE)
PAD = 20  # around an icon in its cell
TEXT_ROW = 16  # under the icon, when cells carry a line of text
TEXT_MARGIN = 3  # each side of a cell's line of text, as the style leaves it
TEXT_ALIGN = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter
SELECTED = QStyle.StateFlag.State_Selected
HAS_FOCUS = QStyle.StateFlag.State_HasFocus
ModelIndex = QModelIndex | QPersistentModelIndex


def cell_size(side: int, text: bool) -> QSize:
    """The smallest cell for icons of this side; cells widen to fill a row."""
    return QSize(side + PAD, side + PAD + (TEXT_ROW if text else 0))


def _placeholder(broken: bool) -> QPixmap:
    """A grey tile with a little landscape (or a cross, for a photo that cannot be shown)."""
    pm = QPixmap(ICON)
    pm.fill(QColor("#d9dce1"))
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(QPen(QColor("#9aa1ab"), 4))
    if broken:
        p.drawLine(60, 60, 100, 100)
        p.drawLine(100, 60, 60, 100)
    else:
        p.setBrush(QColor("#9aa1ab"))
        p.drawEllipse(98, 48, 18, 18)
        p.drawPolygon(QPolygon([QPoint(40, 112), QPoint(70, 76), QPoint(92, 100),
                                QPoint(104, 88), QPoint(124, 112)]))
    p.end()
    return pm


class ResultsModel(QAbstractListModel):
    HitRole = Qt.ItemDataRole.UserRole + 1
    MarkRole = Qt.ItemDataRole.UserRole + 2  # True: marked right for the query, False: wrong

    def __init__(self, loader: ThumbnailLoader, parent=None) -> None:
        super().__init__(parent)
        self.loader = loader
        self.min_score: float | None = None
        self.sort = SORT_RELEVANCE
        self.browsing = False  # the library newest first, with no query: no strength to filter
        self.show_names = False  # file names under the photos (a setting; month names always)
        self.marks: dict[int, bool] = {}  # photo id -> marked right (True) or wrong (False)
        self._all: list = []
        self._months: set[int] = set()
        self._rows: list = []
        self._row_of: dict[str, list[int]] = {}
        self._placeholders: dict[bool, tuple[QIcon, QPixmap]] = {}  # broken -> (icon, pixmap)
        loader.ready.connect(self._icon_ready)

    # -- what is shown ----------------------------------------------------------------------------
    def set_hits(self, hits: list, browsing: bool = False) -> None:
        """A new query's hits (engine.query.Hit), or with ``browsing`` the library's photos
        newest first: older thumbnails still in flight are dropped."""
        self.loader.new_generation()
        self.marks = {}
        self.browsing = browsing
        self._all = list(hits)
        self._relayout()

    def add_hits(self, hits: list) -> None:
        """The next page of the same query's hits, after those shown."""
        self._all += list(hits)
        self._relayout()

    def clear(self) -> None:
        self.set_hits([])

    def set_min_score(self, value: float | None) -> None:
        self.min_score = value
        self._relayout()

    def set_marks(self, marks: dict[int, bool]) -> None:
        """The person's marks for the query on screen (the cells show them)."""
        self.marks = dict(marks)
        if self._rows:
            self.dataChanged.emit(self.index(0), self.index(len(self._rows) - 1),
                                  [self.MarkRole])

    def set_show_names(self, show: bool) -> None:
        self.show_names = show
        if self._rows:
            self.dataChanged.emit(self.index(0), self.index(len(self._rows) - 1),
                                  [Qt.ItemDataRole.DisplayRole])

    @property
    def has_text(self) -> bool:
        """Whether cells carry a line of text: file names, or the library's month names."""
        return self.show_names or self.browsing

    def set_sort(self, key: str) -> None:
        self.sort = key
        self._relayout()

    def total_hits(self) -> int:
        return len(self._all)

    def hit(self, row: int):
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def row_of(self, photo_id: int) -> int:
        return next((i for i, h in enumerate(self._rows) if h.photo_id == photo_id), -1)

    def hits(self) -> list:
        """Every hit of the query on screen (those below the minimum strength too)."""
        return list(self._all)

    def update_photos(self, changed: dict) -> None:
        """Photos that changed on disk since the search, by id: their new hit (renamed or moved:
        the row follows it) or None (gone: the row leaves). Every other row, and the selection,
        stays where it is."""
        if not changed:
            return
        kept = [changed.get(h.photo_id, h) for h in self._all]
        self._all = [h for h in kept if h is not None]
        for row in reversed(range(len(self._rows))):
            pid = self._rows[row].photo_id
            if pid not in changed:
                continue
            if changed[pid] is None:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._rows[row]
                self.endRemoveRows()
            else:
                self._rows[row] = changed[pid]
                self.dataChanged.emit(self.index(row), self.index(row))
        self._row_of = {}
        for i, h in enumerate(self._rows):
            self._row_of.setdefault(h.path, []).append(i)

    def _relayout(self) -> None:
        self.beginResetModel()
        rows = [h for h in self._all if self.browsing or self.min_score is None
                or h.strength >= self.min_score]
        if self.sort == SORT_DATE and not self.browsing:
            rows.sort(key=lambda h: h.date or datetime.min, reverse=True)
        self._rows = rows
        self._row_of = {}
        for i, h in enumerate(rows):
            self._row_of.setdefault(h.path, []).append(i)
        self._months = self._month_starts(rows) if self.by_date else set()
        self.endResetModel()

    @property
    def by_date(self) -> bool:
        """Rows in date order (the library view, or results sorted newest first)."""
        return self.browsing or self.sort == SORT_DATE

    @staticmethod
    def _month_starts(rows: list) -> set[int]:
        """The rows where a new month begins (undated photos count as one month, last)."""
        starts, previous = set(), object()
        for i, h in enumerate(rows):
            month = (h.date.year, h.date.month) if h.date else None
            if month != previous:
                starts.add(i)
                previous = month
        return starts

    def month_of(self, row: int) -> str:
        """The month a row's photo belongs to, as a header says it ("March 2024")."""
        hit = self.hit(row)
        if hit is None:
            return ""
        return f"{hit.date:%B %Y}" if hit.date else "No date"

    # -- the Qt model -----------------------------------------------------------------------------
    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        hit = self.hit(index.row()) if index.isValid() else None
        if hit is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(index.row(), hit)
        if role == Qt.ItemDataRole.DecorationRole:
            return self.loader.icon(hit.path) or self._placeholder(hit.path)[0]
        if role == Qt.ItemDataRole.ToolTipRole:
            when = f"\n{hit.date:%Y-%m-%d %H:%M}" if hit.date else ""
            if self.browsing:
                return f"{hit.path}{when}"
            words = ", its words match" if hit.words else ""
            return f"{hit.match} match{words}{when}\n{hit.path}"
        if role == self.HitRole:
            return hit
        if role == self.MarkRole:
            return self.marks.get(hit.photo_id)
        return None

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        flags = super().flags(index)
        return flags | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else flags

    def mimeTypes(self) -> list[str]:  # noqa: N802 (Qt's name)
        return ["text/uri-list", "text/plain"]

    def mimeData(self, indexes) -> QMimeData:  # noqa: N802 (Qt's name)
        """The photos as files, for dragging out to a file manager, a mail or an editor."""
        paths = [h.path for h in (i.data(self.HitRole) for i in indexes) if h is not None]
        return files_mime(paths)

    def cell(self, row: int) -> tuple[QPixmap, str, bool | None] | None:
        """What a cell shows, in one call (the grid paints hundreds of cells a second): the
        photo's thumbnail (a placeholder until it is made), its line of text, its mark."""
        hit = self.hit(row)
        if hit is None:
            return None
        pixmap = self.loader.pixmap(hit.path) or self._placeholder(hit.path)[1]
        return pixmap, self._text(row, hit), self.marks.get(hit.photo_id)

    def _text(self, row: int, hit) -> str:
        if self.browsing:  # the library view: the first photo of each month names it
            return self.month_of(row) if row in self._months else ""
        return os.path.basename(hit.path) if self.show_names else ""

    def _placeholder(self, path: str) -> tuple[QIcon, QPixmap]:
        broken = self.loader.failed(path)
        made = self._placeholders.get(broken)
        if made is None:
            pm = _placeholder(broken)
            made = self._placeholders[broken] = (QIcon(pm), pm)
        return made

    def _icon_ready(self, path: str) -> None:
        for row in self._row_of.get(path, ()):
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


def files_mime(paths: list[str]) -> QMimeData:
    """Files as other programs take them: as file URLs, and as paths for text fields."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(p) for p in paths])
    mime.setText("\n".join(paths))
    return mime


class CellDelegate(QStyledItemDelegate):
    """Draws a cell as usual but marks a selected photo with a clear frame around it, instead of
    a tint that hides the photo."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        state = option.state
        selected = bool(state & SELECTED)
        cell = getattr(index.model(), "cell", None)
        shown = cell(index.row()) if cell is not None else None
        side = option.decorationSize.width()
        if shown is None:  # another model: drawn as Qt draws it, without the selection tint
            plain = QStyleOptionViewItem(option)
            plain.state &= ~(SELECTED | HAS_FOCUS)
            super().paint(painter, plain, index)
            mark = index.data(ResultsModel.MarkRole)
        else:  # drawn here: the style's way asks the model for eight roles a cell
            pixmap, text, mark = shown
            box = option.rect
            top = box.top() + 1  # where the style puts an icon-mode decoration
            painter.drawPixmap(QRect(box.left() + (box.width() - side) // 2, top, side, side),
                               pixmap)
            if text:
                width = box.width() - 2 * TEXT_MARGIN
                line = option.fontMetrics.elidedText(text, option.textElideMode, width)
                painter.setFont(option.font)
                painter.setPen(option.palette.color(QPalette.ColorRole.Text))
                painter.drawText(QRect(box.left() + TEXT_MARGIN, top + side, width,
                                       box.bottom() - top - side), TEXT_ALIGN, line)
        rect = QRect(option.rect.center().x() - side // 2 - 4, option.rect.top() + 4,
                     side + 8, side + 8)
        if mark is not None:
            self._badge(painter, rect, mark)
        if not selected and not state & HAS_FOCUS:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        color = option.palette.highlight().color()
        if selected:
            painter.setPen(QPen(color, 4))
        else:  # the keyboard's place, not selected: a thin dashed frame
            painter.setPen(QPen(color, 1, Qt.PenStyle.DashLine))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(rect, 6, 6)
        painter.restore()


    @staticmethod
    def _badge(painter: QPainter, rect: QRect, right: bool) -> None:
        """A round mark at the photo's top right: a tick (right for the query) or a cross."""
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        badge = QRect(rect.right() - 26, rect.top() + 6, 20, 20)
        painter.setPen(QPen(QColor("white"), 2))
        painter.setBrush(QColor("#2e9d4f") if right else QColor("#c0392b"))
        painter.drawEllipse(badge)
        painter.setPen(QPen(QColor("white"), 2.5))
        c = badge.center()
        if right:
            painter.drawPolyline(QPolygon([QPoint(c.x() - 5, c.y()), QPoint(c.x() - 1, c.y() + 4),
                                           QPoint(c.x() + 5, c.y() - 4)]))
        else:
            painter.drawLine(c.x() - 4, c.y() - 4, c.x() + 4, c.y() + 4)
            painter.drawLine(c.x() + 4, c.y() - 4, c.x() - 4, c.y() + 4)
        painter.restore()


class ResultsView(QListView):
    """An icon grid that lays out thousands of rows cheaply and paints only what is visible."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setUniformItemSizes(True)
        self.side = ICON_SIDE
        self.setIconSize(ICON)
        self.setGridSize(cell_size(ICON_SIDE, True))
        self.setItemDelegate(CellDelegate(self))
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setWrapping(True)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        # Shift and Ctrl select several; Ctrl+A all of them
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        # Always there, so the viewport's width (and the columns worked out from it) does not
        # change when a few results need no scrolling.
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        self.verticalScrollBar().setSingleStep(24)
        self.setDragEnabled(True)  # photos drag out to other programs as files
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setAccessibleName("Search results")
        # The month of the photos at the top of the view, over the grid, while they are in
        # date order: a header that stays as the months scroll past under it.
        self.month_header = QLabel(self.viewport())
        self.month_header.setStyleSheet(
            "QLabel { background: rgba(255, 255, 255, 225); color: #222; font-weight: 600; "
            "padding: 3px 10px; border-bottom-right-radius: 6px; }")
        self.month_header.move(0, 0)
        self.month_header.hide()
        self.verticalScrollBar().valueChanged.connect(self.update_month_header)

    def setModel(self, model) -> None:  # noqa: N802 (Qt's name)
        super().setModel(model)
        model.modelReset.connect(self.update_month_header)
        model.modelReset.connect(self._fit_columns)  # cells with or without a line of text
        model.rowsRemoved.connect(self.update_month_header)

    def set_icon_side(self, side: int) -> None:
        """Thumbnails of another size (logical pixels; one of ICON_SIDES)."""
        self.side = side
        self.setIconSize(QSize(side, side))
        self._fit_columns()

    def step_icon_side(self, step: int) -> int:
        """The next larger (+1) or smaller (-1) thumbnail size; the new side."""
        sides = list(ICON_SIDES)
        i = min(range(len(sides)), key=lambda j: abs(sides[j] - self.side))
        side = sides[max(0, min(len(sides) - 1, i + step))]
        self.set_icon_side(side)
        return side

    def selected_hits(self) -> list:
        """The selected photos, in the grid's order."""
        rows = sorted(i.row() for i in self.selectionModel().selectedIndexes())
        model = self.model()
        return [h for h in (model.hit(r) for r in rows) if h is not None]

    def update_month_header(self, *_args) -> None:
        model = self.model()
        grid = self.gridSize()
        index = self.indexAt(QPoint(grid.width() // 2, grid.height() // 2))
        if model is None or not model.by_date or not model.rowCount():
            self.month_header.hide()
            return
        row = index.row() if index.isValid() else 0
        self.month_header.setText(model.month_of(row))
        self.month_header.adjustSize()
        self.month_header.show()
        self.month_header.raise_()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)  # first: the viewport takes its new width here
        self._fit_columns()

    def _fit_columns(self, *_args) -> None:
        """Widen the cells so the columns fill the row instead of leaving a gap on the right."""
        model = self.model()
        smallest = cell_size(self.side, model is None or model.has_text)
        width = self.viewport().width() - 1  # a row exactly as wide as the view wraps its last
        columns = max(1, width // smallest.width())
        cell = QSize(max(smallest.width(), width // columns), smallest.height())
        if cell != self.gridSize():
            self.setGridSize(cell)

    def startDrag(self, actions) -> None:  # noqa: N802 (Qt's name)
        super().startDrag(Qt.DropAction.CopyAction)  # never a move: the photos stay put

    def current_hit(self):
        idx = self.currentIndex()
        return idx.data(ResultsModel.HitRole) if idx.isValid() else None
