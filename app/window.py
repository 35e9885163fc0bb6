"""The main window: search field and filters, the results grid, the preview pane.

It shows itself at once and opens the library (which loads the model) in a worker. Everything
slow runs through ``Jobs``; the window only wires signals and shows what comes back.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from functools import partial

from PySide6.QtCore import QEvent, QModelIndex, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QMainWindow,
    QMenu,
    QPushButton,
    QSlider,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from engine.errors import QueryError

from . import imagequery
from .clusterjobs import ClusterJobs
from .feedback import FeedbackActions
from .live import LiveLibrary
from .names import NameActions
from .operations import CAPTIONS, Operations
from .pages import Banner, EmptyState, LoadingPage, Notice
from .preview import PreviewPane, show_in_folder
from .results import ResultsModel, ResultsView
from .searchbar import SearchBar, SearchRequest
from .selection import SelectionActions
from .settings import Settings, config_dir, library_location, load_settings, save_settings
from .statusbar import StatusBar
from .thumbs import ICON_SIDES, ThumbnailLoader
from .viewer import Viewer
from .workers import Jobs, error_text

log = logging.getLogger(__name__)

# After the first query's results are painted, the model and the watcher start loading.
BACKGROUND_DELAY_MS = 300
# The library opens after the window's first paint, or after this long if it is never painted.
OPEN_AT_THE_LATEST_MS = 400


def open_outside(path: str) -> None:
    """Hand a photo to the program the system opens photos with."""
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QDesktopServices

    QDesktopServices.openUrl(QUrl.fromLocalFile(path))


def open_library(settings: Settings):
    """The library the settings point at (heavy: imports torch and loads the model)."""
    from engine.config import IndexingConfig
    from engine.library import Library
    from engine.models.devices import usable_device

    device, note = usable_device(settings.device)
    if note:
        log.warning(note)
    return Library.open(library_location(settings), device=device,
                        indexing=IndexingConfig(exclude_globs=tuple(settings.exclude_patterns)))


class MainWindow(QMainWindow):
    def __init__(self, library=None, library_factory: Callable[[], object] | None = None,
                 settings: Settings | None = None, watch_options=None) -> None:
        super().__init__()
        self.setWindowTitle("Chikaku")
        self.settings = settings or load_settings()
        self.library = None
        self.status = None
        self._owns_library = library is None
        self._search_gen = 0
        self.shown: SearchRequest | None = None  # the query whose results are on screen
        self._pending: SearchRequest | None = None
        self._warm = False  # the model is loaded: a query is answered at once
        self._closing = False
        self._opening: Callable[[], object] | None = None  # the library, opened after the first paint
        self._after_search = False  # the model and the watcher start after the first search
        self._home_photos = -1  # how many photos the home view (no query) holds
        self._settings_dialog = None
        self.jobs = Jobs(self, on_error=self.show_error)
        self.loader = ThumbnailLoader(self.jobs, self)
        self.results = ResultsModel(self.loader, self)
        self._build()
        self._build_actions()
        self._build_menus()
        self._apply_view_settings()
        # keeps the library current with its folders (watch_options: the watcher's timings)
        self.live = LiveLibrary(self.ops, self.settings, self.statusbar, self.results,
                                self.preview, watch_options, self)
        self.live.photos_changed.connect(self.refresh_status)
        self.cluster = ClusterJobs(self.ops, self.statusbar, self)  # jobs on a Ray cluster
        self.cluster.ingested.connect(self.refresh_status)
        self.setAcceptDrops(True)
        self._restore_geometry()
        if library is not None:
            self._library_ready(library)
        else:
            # opened once the window is on screen: its imports would only slow the first paint
            self._opening = library_factory or partial(open_library, self.settings)
            self.installEventFilter(self)
            QTimer.singleShot(OPEN_AT_THE_LATEST_MS, self._open_now)  # never shown: opened anyway

    # -- building ---------------------------------------------------------------------------------
    def _build(self) -> None:
        self.search = SearchBar(self)
        self.search.clipboard_has_image = lambda: imagequery.pixels_from_mime(
            QGuiApplication.clipboard().mimeData()) is not None
        self.banner = Banner(self)
        self.loading, self.empty = LoadingPage(self), EmptyState(self)
        self.grid = ResultsView(self)
        self.grid.setModel(self.results)
        self.notice = Notice(self)
        self.results_stack = QStackedWidget(self)
        self.results_stack.addWidget(self.notice)
        self.results_stack.addWidget(self.grid)
        self.statusbar = StatusBar(self)
        self.ops = Operations(self.jobs, self.statusbar, self)
        self.preview = PreviewPane(self.ops, self)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(self.results_stack)
        self.splitter.addWidget(self.preview)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.viewer = Viewer(self.ops, self.results, self)
        self.pages = QStackedWidget(self)
        for page in (self.loading, self.empty, self.splitter, self.viewer):
            self.pages.addWidget(page)
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(10, 10, 10, 4)
        for w in (self.search, self.banner, self.pages):
            layout.addWidget(w, 1 if w is self.pages else 0)
        self.setCentralWidget(central)
        self.setStatusBar(self.statusbar)
        # a search shows its likely matches; this pages in the rest of the library
        self.more = QPushButton("Show more", self)
        self.more.setToolTip("Show the next photos, weaker matches of the same search")
        self.more.setVisible(False)
        self.more.clicked.connect(self.show_more)
        self.statusbar.addPermanentWidget(self.more)
        self.thumb_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.thumb_slider.setRange(0, len(ICON_SIDES) - 1)
        self.thumb_slider.setPageStep(1)
        self.thumb_slider.setFixedWidth(90)
        self.thumb_slider.setToolTip("Thumbnail size (Ctrl+plus, Ctrl+minus)")
        self.thumb_slider.setAccessibleName("Thumbnail size")
        self.thumb_slider.valueChanged.connect(lambda i: self.set_thumb_size(ICON_SIDES[i]))
        self.statusbar.addPermanentWidget(self.thumb_slider)
        self.selection = SelectionActions(self.grid, self.ops, open_outside, self)
        self.feedback = FeedbackActions(self)
        self._keep_photo: int | None = None  # after a re-rank: the photo the grid stays on
        self.namer = NameActions(self.grid, self.ops, self.search.field, self)  # @names
        self._connect()

    def _connect(self) -> None:
        self.search.search_requested.connect(self.run_search)
        self.search.presentation_changed.connect(self._presentation_changed)
        self.search.paste_requested.connect(self.paste_image)
        self.search.leave_down.connect(self.focus_results)
        self.search.open_button.clicked.connect(self.open_image_query)
        self.search.settings_button.clicked.connect(self.open_settings)
        self.empty.add_folder.connect(self.choose_folder)
        self.ops.changed.connect(self.library_changed)
        self.ops.indexing.connect(self.empty.set_busy)
        self.ops.growing.connect(self.refresh_status)
        self.ops.succeeded.connect(self.banner.succeeded)  # photos appear while a folder is indexed
        self.grid.selectionModel().currentChanged.connect(self._current_changed)
        self.grid.doubleClicked.connect(lambda _i: self.open_current())
        self.grid.customContextMenuRequested.connect(self._context_menu)
        self.preview.find_similar.connect(self.find_similar)
        self.viewer.closed.connect(self._viewer_closed)
        self.viewer.open_outside.connect(open_outside)
        self.preview.message.connect(lambda text: self.statusbar.showMessage(text, 5000))

    def _action(self, text: str, keys, slot, widget: QWidget | None = None) -> QAction:
        action = QAction(text, widget or self)
        action.setShortcuts(keys if isinstance(keys, list) else [QKeySequence(keys)])
        context = (Qt.ShortcutContext.WidgetShortcut if widget is not None
                   else Qt.ShortcutContext.WindowShortcut)
        action.setShortcutContext(context)
        action.triggered.connect(slot)
        (widget or self).addAction(action)
        return action

    def _build_actions(self) -> None:
        self._action("Search", "Ctrl+F", self.focus_search)
        self._action("Search with an image file…", "Ctrl+O", self.open_image_query)
        self._action("Settings…", [QKeySequence("Ctrl+,"),
                                   QKeySequence(QKeySequence.StandardKey.Preferences)],
                     self.open_settings)
        self._action("Paste an image to search with", QKeySequence.StandardKey.Paste,
                     self.paste_image)
        self._action("Find similar", "Ctrl+Shift+F", lambda: self.find_similar(None))
        self._action("Find similar", "S", lambda: self.find_similar(None), self.grid)
        self._action("Show or hide the preview", "Space", self.toggle_preview, self.grid)
        self._action("View", "Return", self.open_current, self.grid)
        self._action("Open in another program", "Ctrl+Return", self.open_current_outside,
                     self.grid)
        self._action("Copy", QKeySequence.StandardKey.Copy, self.selection.copy, self.grid)
        self._action("Right for this search", "R", lambda: self.feedback.mark(True), self.grid)
        self._action("Wrong for this search", "W", lambda: self.feedback.mark(False), self.grid)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        file.addAction("Add a folder of photos…", self.choose_folder)
        captions = file.addMenu("Import captions")
        for text, kind in (("From a CSV file…", "csv"), ("From a COCO JSON file…", "coco"),
                           ("From sidecar files beside the photos", "sidecars"),
                           ("From the descriptions inside the photos", "embedded")):
            captions.addAction(text, lambda kind=kind: self.import_captions(kind))
        file.addAction("Search with an image file…", self.open_image_query)
        file.addSeparator()
        self.copy_to_folder_action = file.addAction("Copy selected photos to a folder…",
                                                    lambda: self.selection.copy_to_folder())
        self.copy_to_folder_action.setShortcut(QKeySequence("Ctrl+Shift+E"))
        file.addSeparator()
        file.addAction("Settings…", self.open_settings)
        file.addAction("Quit", QKeySequence.StandardKey.Quit, self.close)
        edit = bar.addMenu("&Edit")
        edit.addAction("Copy the selected photos", self.selection.copy)
        edit.addAction("Copy their paths", self.selection.copy_paths)
        edit.addAction("Paste an image to search with", self.paste_image)
        edit.addAction("Name the selected photos…", self.namer.name_selected)
        edit.addSeparator()
        edit.addAction("Mark right for this search (R)", lambda: self.feedback.mark(True))
        edit.addAction("Mark wrong for this search (W)", lambda: self.feedback.mark(False))
        edit.addSeparator()
        self.select_all_action = edit.addAction("Select all", QKeySequence.StandardKey.SelectAll,
                                                self.select_all)
        self.select_all_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.grid.addAction(self.select_all_action)  # in the field, Ctrl+A selects its text
        view = bar.addMenu("&View")
        self.names_action = view.addAction("File names under photos")
        self.names_action.setCheckable(True)
        self.names_action.toggled.connect(self.set_show_names)
        view.addAction("Larger thumbnails", QKeySequence.StandardKey.ZoomIn,
                       lambda: self.step_thumb_size(1))
        view.addAction("Smaller thumbnails", QKeySequence.StandardKey.ZoomOut,
                       lambda: self.step_thumb_size(-1))
        view.addAction("Preview", self.toggle_preview)

    # -- what the grid shows ----------------------------------------------------------------------
    def _apply_view_settings(self) -> None:
        side = self.settings.thumb_size if self.settings.thumb_size in ICON_SIDES else 160
        self.names_action.setChecked(bool(self.settings.show_names))
        self.results.set_show_names(bool(self.settings.show_names))
        self.set_thumb_size(side, save=False)

    def set_show_names(self, show: bool) -> None:
        self.results.set_show_names(show)
        self.grid._fit_columns()
        if show != self.settings.show_names:
            self.settings.show_names = show
            self._save_settings()

    def set_thumb_size(self, side: int, save: bool = True) -> None:
        """Thumbnails of this side (logical pixels), made at the screen's pixel ratio."""
        self.loader.set_size(side, self.devicePixelRatioF())
        self.grid.set_icon_side(side)
        self.thumb_slider.blockSignals(True)
        self.thumb_slider.setValue(ICON_SIDES.index(side))
        self.thumb_slider.blockSignals(False)
        if save and side != self.settings.thumb_size:
            self.settings.thumb_size = side
            self._save_settings()

    def step_thumb_size(self, step: int) -> None:
        i = ICON_SIDES.index(self.grid.side) if self.grid.side in ICON_SIDES else 2
        self.set_thumb_size(ICON_SIDES[max(0, min(len(ICON_SIDES) - 1, i + step))])

    def select_all(self) -> None:
        self.grid.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.grid.selectAll()

    def _save_settings(self) -> None:
        try:
            save_settings(self.settings)
        except OSError as e:  # kept for this session; the next start uses the old ones
            log.warning("cannot save the settings: %s", e)

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """Moved to a screen of another pixel ratio: thumbnails made for it."""
        super().changeEvent(event)
        if event.type() == event.Type.DevicePixelRatioChange and hasattr(self, "grid"):
            self.set_thumb_size(self.grid.side, save=False)

    def import_captions(self, kind: str) -> None:
        """File → Import captions: the Fine-tuning tab of Settings, which runs the import and
        shows its report and the count of captioned photos."""
        self.open_settings()
        dialog = self._settings_dialog
        if dialog is not None:
            dialog.tabs.setCurrentWidget(dialog.finetune)
            dialog.finetune.import_captions(kind)

    # -- the library ------------------------------------------------------------------------------
    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt's name)
        if watched is self and event.type() == QEvent.Type.Paint and self._opening is not None:
            QTimer.singleShot(0, self._open_now)  # after this first paint
        return super().eventFilter(watched, event)

    def _open_now(self) -> None:
        factory, self._opening = self._opening, None
        if factory is not None:
            self.removeEventFilter(self)
            self._open(factory)

    def _open(self, factory: Callable[[], object]) -> None:
        self.pages.setCurrentWidget(self.loading)
        self.jobs.submit(factory, name="open library", done=self._library_ready,
                         failed=self._library_failed)

    def _library_ready(self, library) -> None:
        # The engine and its model leave hundreds of thousands of long-lived objects. A full
        # garbage collection over them, started by whichever thread happens to allocate, holds
        # the interpreter lock long enough for the UI to stutter; frozen, they are skipped.
        gc.freeze()
        self.library = library
        self.loader.cache_dir = library.root / "cache" / "thumbs"
        self.ops.library = library
        self._warm = False
        if self.settings.device == "cuda" and getattr(library.config, "device", "cuda") != "cuda":
            self.statusbar.showMessage("No CUDA GPU was found on this computer, so the model "
                                       "runs on the CPU (Settings → Model).", 15000)
        self.statusbar.start_activity("warm", "Getting search ready…")
        # Text search first (the engine answers words before the whole model has loaded), then
        # the model and the folders' catch-up pass, which would only slow the first search.
        self.ops.call("warm_up", name="get search ready", done=lambda _r: self._warmed(),
                      failed=self._warm_failed)
        self.refresh_status()
        self.cluster.start(library)

    def _library_failed(self, exc: BaseException) -> None:
        self.loading.show_problem(f"Could not open the library: {error_text(exc)}")
        self.show_error("open library", exc)

    def _warmed(self) -> None:
        self._warm = True
        self.statusbar.end_activity("warm")
        if self._pending is not None:  # the query typed meanwhile goes first
            request, self._pending = self._pending, None
            self.run_search(request)
            self._after_search = True  # (after: a new query would start them at once)
        else:
            self._start_background()

    def _start_background(self) -> None:
        """Once text search is ready and the first query answered: the whole model (image
        queries, indexing) and keeping the library current, which would only slow that query."""
        self._after_search = False
        library = self.library
        if library is not None and self.live.library is not library and not self._closing:
            self.ops.call("load_model", name="load the model")
            self.live.start(library)

    def _warm_failed(self, exc: BaseException) -> None:
        self.show_error("open library", exc)
        self._warmed()  # searches now say themselves what is wrong

    def refresh_status(self) -> None:
        self.ops.call("status", done=self._status_ready)

    def _status_ready(self, status) -> None:
        self.status = status
        self.statusbar.set_library(status)
        self.search.set_folders(status.folders)
        if self._settings_dialog is not None:
            self._settings_dialog.set_status(status)
        empty = status.photos == 0
        if empty or self.pages.currentWidget() is not self.viewer:  # a photo viewed stays
            self.pages.setCurrentWidget(self.empty if empty else self.splitter)
        self.search.set_searchable(not empty)
        home_current = self.results.browsing and self._home_photos == status.photos
        if (not empty and self.search.request().is_empty() and self._pending is None
                and not home_current):
            self.show_home()
        if self._pending is not None:
            request, self._pending = self._pending, None
            self.run_search(request)

    # -- searching --------------------------------------------------------------------------------
    def run_search(self, request: SearchRequest) -> None:
        self._search_gen += 1
        gen = self._search_gen
        if self._after_search:  # a query replaced the first one: waiting helps no more
            self._start_background()
        if request.is_empty():
            self._pending = None
            self.show_home()
            return
        if self.library is None or not self._warm:
            self._pending = request  # run the moment the model is there
            self.results.clear()
            self._show_notice("Getting search ready… your search runs in a moment.")
            return
        self.statusbar.showMessage("Searching…")
        self.more.setVisible(False)
        self.ops.call("search", request.text or None, None,  # the likely matches
                      image=list(request.images), folder=request.folder,
                      date_from=request.date_from, date_to=request.date_to, name="search",
                      log_failures=False,  # a half-typed query is not worth a traceback
                      done=lambda hits: self._search_done(gen, request, hits),
                      failed=lambda exc: self._search_failed(gen, exc))

    def show_home(self) -> None:
        """With no query: the whole library, newest first."""
        if self.library is None:
            return
        self._search_gen += 1
        gen = self._search_gen
        self.more.setVisible(False)
        self.ops.call("browse", name="browse", done=lambda hits: self._home_ready(gen, hits))

    def _home_ready(self, gen: int, hits: list) -> None:
        if gen != self._search_gen:
            return  # a query was typed meanwhile
        self.shown = None
        self._home_photos = len(hits)
        self.results.set_hits(hits, browsing=True)
        if hits:
            self.results_stack.setCurrentWidget(self.grid)
            self.grid.scrollToTop()
        else:
            self._show_notice("Type what you are looking for, or drop a photo here.")

    def _search_done(self, gen: int, request: SearchRequest, hits: list) -> None:
        if gen != self._search_gen:
            return  # an older query finished after a newer one was asked for
        if self.statusbar.currentMessage() == "Searching…":  # (not a message said meanwhile)
            self.statusbar.clearMessage()
        self.banner.succeeded("search")
        self.show_hits(hits, request)
        if self._after_search:  # once the results are painted
            self._after_search = False
            QTimer.singleShot(BACKGROUND_DELAY_MS, self._start_background)

    def show_hits(self, hits: list, request: SearchRequest | None = None) -> None:
        """Put a search's hits (engine.query.Hit) in the grid."""
        self._search_gen += 1  # whatever was on its way to the grid (the library view) is late
        self.shown = request
        self.results.set_hits(hits)
        self._offer_more(len(hits) > 0)
        self._after_results()
        self.feedback.refresh()

    def keep_place(self, photo_id: int | None) -> None:
        """The next results of the same search keep this photo selected where it now is."""
        self._keep_photo = photo_id

    def _offer_more(self, maybe: bool) -> None:
        photos = self.status.photos if self.status is not None else 0
        self.more.setVisible(bool(maybe and self.shown is not None
                                  and self.results.total_hits() < photos))

    def show_more(self) -> None:
        """The next page of the search on screen, after the photos shown."""
        request, gen = self.shown, self._search_gen
        if request is None or self.library is None:
            return
        self.more.setEnabled(False)

        def done(hits: list) -> None:
            self.more.setEnabled(True)
            if gen == self._search_gen:
                self.results.add_hits(hits)
                self._offer_more(len(hits) == self.settings.results)

        def failed(exc: BaseException) -> None:
            self.more.setEnabled(True)
            self._search_failed(gen, exc)

        self.ops.call("search", request.text or None, self.settings.results,
                      image=list(request.images), folder=request.folder,
                      date_from=request.date_from,
                      date_to=request.date_to, offset=self.results.total_hits(),
                      name="search", log_failures=False, done=done, failed=failed)

    def _after_results(self) -> None:
        shown, total = self.results.rowCount(), self.results.total_hits()
        keep, self._keep_photo = self._keep_photo, None
        if shown:
            self.results_stack.setCurrentWidget(self.grid)
            row = self.results.row_of(keep) if keep is not None else -1
            self.grid.setCurrentIndex(self.results.index(max(row, 0)))
            if row >= 0:
                self.grid.scrollTo(self.results.index(row))
            else:
                self.grid.scrollToTop()
        elif total:
            self._show_notice(f"None of the {total:,} photos found reach the minimum strength.")
        else:
            self._show_notice("No photos match the folder and dates chosen.")

    def _search_failed(self, gen: int, exc: BaseException) -> None:
        if gen != self._search_gen:
            return
        if self._after_search:
            self._start_background()
        self.statusbar.clearMessage()
        self.results.clear()
        self._show_notice(error_text(exc)[:1].upper() + error_text(exc)[1:])
        if not isinstance(exc, QueryError):
            log.error("search failed", exc_info=(type(exc), exc, exc.__traceback__))
            self.show_error("search", exc)

    def _presentation_changed(self) -> None:
        self.results.set_min_score(self.search.min_score())
        self.results.set_sort(self.search.sort_key())
        if self.results.total_hits():
            self._after_results()

    def _show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.results_stack.setCurrentWidget(self.notice)
        self.preview.show_hit(None)

    def find_similar(self, photo_id: int | None = None, add: bool = False) -> None:
        """Search with a photo of the library: it becomes the query's image (a chip beside the
        field, replacing any earlier one, or with ``add`` beside it); no internal id is written
        in the field."""
        if photo_id is None:
            hit = self.grid.current_hit()
        else:
            row = self.results.row_of(photo_id)
            hit = self.results.hit(row) if row >= 0 else None
        if hit is None and self.preview.current is not None and (
                photo_id is None or self.preview.current.photo_id == photo_id):
            hit = self.preview.current  # has the same photo_id and path
        if hit is None:
            return
        if not add:
            self.search.field.clear()  # "more like this" starts a new query
        self.search.set_image(hit.path, search=True, add=add)

    def search_with_image(self, path: str, add: bool = False) -> None:
        """Search with an image file; it replaces the image searched with, or with ``add`` is
        searched with beside it."""
        self.search.set_image(path, search=True, add=add)

    # -- images as queries ------------------------------------------------------------------------
    def _takes_drop(self, event) -> bool:
        # photos dragged from the grid are going out to another program, not into a query
        return event.source() is not self.grid and imagequery.can_query(event.mimeData())

    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if self._takes_drop(event):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if self._takes_drop(event):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if not self._takes_drop(event):
            return
        held = event.modifiers()
        add = bool(held & (Qt.KeyboardModifier.ShiftModifier
                           | Qt.KeyboardModifier.ControlModifier))
        if self.query_from_mime(event.mimeData(), add=add):
            event.acceptProposedAction()

    def query_from_mime(self, mime, add: bool = False) -> bool:
        """Search with the image a drop or the clipboard carries (``add``: beside the image
        there); False if it holds none."""
        path = imagequery.image_file_from_mime(mime)
        if path is not None:
            self.search_with_image(path, add=add)
            return True
        pixels = imagequery.pixels_from_mime(mime)
        if pixels is None or self.library is None:
            return False
        self.jobs.submit(imagequery.save_pasted, pixels, self.library.root / "cache" / "queries",
                         name="paste image", done=lambda p: self.search_with_image(p, add=add))
        return True

    def paste_image(self) -> None:
        if not self.query_from_mime(QGuiApplication.clipboard().mimeData()):
            self.statusbar.showMessage("The clipboard holds no image to search with.", 5000)

    def open_image_query(self) -> None:
        exts = " ".join(f"*{e}" for e in sorted(imagequery.IMAGE_EXTENSIONS))
        path, _ = QFileDialog.getOpenFileName(self, "Search with an image", "",
                                              f"Images ({exts})")
        if path:  # Shift or Ctrl held as the dialog closes: beside the image already there
            held = QGuiApplication.queryKeyboardModifiers()
            self.search_with_image(path, add=bool(held & (Qt.KeyboardModifier.ShiftModifier
                                                          | Qt.KeyboardModifier.ControlModifier)))

    # -- folders ----------------------------------------------------------------------------------
    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a folder of photos")
        if path:
            self.add_folder(path)

    def add_folder(self, path: str) -> None:
        self.ops.add_folder(path)

    def library_changed(self, what: str) -> None:
        """An operation changed the library: counts are refreshed, and so are the results on
        screen when the photos or the model changed (not for a caption: the grid stays put)."""
        self.refresh_status()
        request = self.search.request()
        if what != CAPTIONS and not request.is_empty():
            self.run_search(request)  # (with no query, the new status shows the library again)

    # -- the selected photo -----------------------------------------------------------------------
    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        hit = current.data(ResultsModel.HitRole) if current.isValid() else None
        if self.preview.isVisible():
            self.preview.show_hit(hit)

    def toggle_preview(self) -> None:
        self.preview.setVisible(not self.preview.isVisible())
        if self.preview.isVisible():
            self.preview.show_hit(self.grid.current_hit())

    def open_current(self) -> None:
        """The selected photo large, in the window (Esc comes back to the grid)."""
        index = self.grid.currentIndex()
        if index.isValid():
            self.pages.setCurrentWidget(self.viewer)
            self.viewer.show_row(index.row())

    def open_current_outside(self) -> None:
        hit = self.grid.current_hit()
        if hit is not None:
            open_outside(hit.path)

    def _viewer_closed(self, row: int) -> None:
        self.pages.setCurrentWidget(self.splitter)
        if 0 <= row < self.results.rowCount():
            index = self.results.index(row)
            self.grid.setCurrentIndex(index)
            self.grid.scrollTo(index)
        self.grid.setFocus(Qt.FocusReason.OtherFocusReason)

    def _context_menu(self, pos) -> None:
        index = self.grid.indexAt(pos)
        hit = index.data(ResultsModel.HitRole) if index.isValid() else None
        if hit is None:
            return
        if not self.grid.selectionModel().isSelected(index):  # a right-click outside the
            self.grid.setCurrentIndex(index)                   # selection selects that photo
        menu = self.selection_menu(hit)
        menu.popup(self.grid.viewport().mapToGlobal(pos))

    def selection_menu(self, hit) -> QMenu:
        """The actions for the photo clicked and the others selected with it."""
        n = len(self.grid.selected_hits())
        menu = QMenu(self)
        menu.addAction("Find similar", lambda: self.find_similar(hit.photo_id))
        menu.addAction("Add to the image search", lambda: self.find_similar(hit.photo_id,
                                                                            add=True))
        if n <= 1:
            menu.addAction("View", self.open_current)
            menu.addAction("Open in another program", self.open_current_outside)
            menu.addAction("Show in folder", lambda: show_in_folder(hit.path))
        else:
            menu.addAction(f"Open the {n:,} photos", self.selection.open_all)
            menu.addAction("Show in folders", self.selection.show_in_folders)
        if self.feedback.query() is not None:
            query = self.feedback.query()
            short = query if len(query) <= 30 else f"{query[:29]}…"
            menu.addSeparator()
            menu.addAction(f"Right for “{short}”  (R)", lambda: self.feedback.mark(True))
            menu.addAction(f"Wrong for “{short}”  (W)", lambda: self.feedback.mark(False))
        menu.addSeparator()
        several = f" the {n:,} photos" if n > 1 else ""
        menu.addAction(f"Copy{several}", self.selection.copy)
        menu.addAction("Copy path" + ("s" if n > 1 else ""), self.selection.copy_paths)
        menu.addAction(f"Copy{several} to a folder…", lambda: self.selection.copy_to_folder())
        menu.addSeparator()
        menu.addAction("Name these…" if n > 1 else "Name this…", self.namer.name_selected)
        self.context_menu = menu  # (tests read it)
        return menu

    def focus_search(self) -> None:
        self.search.field.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.field.selectAll()

    def focus_results(self) -> None:
        if self.results.rowCount():
            self.grid.setFocus(Qt.FocusReason.OtherFocusReason)
            if not self.grid.currentIndex().isValid():
                self.grid.setCurrentIndex(self.results.index(0))

    # -- settings, errors, closing ----------------------------------------------------------------
    def open_settings(self) -> None:
        from .settings_dialog import SettingsDialog

        if self._settings_dialog is None:
            self._settings_dialog = SettingsDialog(self.ops, self.settings, self.choose_folder,
                                                   self, live=self.live)
        if self.status is not None:
            self._settings_dialog.set_status(self.status)
        self._settings_dialog.show()
        self._settings_dialog.raise_()

    def show_error(self, job: str, exc: BaseException) -> None:
        self.banner.show_failure(job, exc)

    def _window_state(self) -> QSettings:
        return QSettings(str(config_dir() / "window.ini"), QSettings.Format.IniFormat)

    def _restore_geometry(self) -> None:
        state = self._window_state()
        if not self.restoreGeometry(state.value("geometry", b"")):
            self.resize(1200, 780)
        if not self.splitter.restoreState(state.value("splitter", b"")):
            self.splitter.setSizes([720, 460])

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        state = self._window_state()
        state.setValue("geometry", self.saveGeometry())
        state.setValue("splitter", self.splitter.saveState())
        state.sync()
        self._closing = True  # nothing starts now (a warm-up ending late starts no watcher)
        if self._settings_dialog is not None:
            self._settings_dialog.apply()
        if self.preview.is_dirty():
            self.preview.save_captions()
        self.jobs.cancel_all()
        self.cluster.stop()
        self.live.stop()  # the watcher's pass ends at its next photo, before the library closes
        self.jobs.wait()  # catalog writes finish; long jobs stop at their next step
        if self._owns_library and self.library is not None:
            self.library.close()
        super().closeEvent(event)
