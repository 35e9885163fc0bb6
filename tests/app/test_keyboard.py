"""The keyboard: Ctrl+F, arrows from the search field into the grid, Enter views a photo in the
window (arrows move, Esc comes back), Ctrl+Enter opens it in another program, Ctrl+,."""

from __future__ import annotations

import os

from PySide6.QtCore import QObject, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices

from tests.app.conftest import WAIT_MS, wait_for_results


class _Opened(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url.toLocalFile())


def test_search_browse_and_open_without_the_mouse(qtbot, tiny_window):
    w = tiny_window
    w.grid.setFocus()
    qtbot.keyClick(w, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert w.search.field.hasFocus()
    qtbot.keyClicks(w.search.field, "people")
    qtbot.keyClick(w.search.field, Qt.Key.Key_Return)  # at once, without the pause
    wait_for_results(qtbot, w, text="people")
    qtbot.keyClick(w.search.field, Qt.Key.Key_Down)
    assert w.grid.hasFocus() and w.grid.currentIndex().row() == 0
    qtbot.keyClick(w.grid, Qt.Key.Key_Right)
    assert w.grid.currentIndex().row() == 1
    # Enter views the photo in the window; the arrows move through the results; Esc comes
    # back to the grid at the photo last viewed; Ctrl+Enter hands it to another program.
    qtbot.keyClick(w.grid, Qt.Key.Key_Return)
    assert w.pages.currentWidget() is w.viewer and w.viewer.row == 1
    qtbot.waitUntil(lambda: w.viewer.image.pixmap() is not None
                    and not w.viewer.image.pixmap().isNull(), timeout=WAIT_MS)
    assert w.viewer.title.text() == os.path.basename(w.results.hit(1).path)
    qtbot.keyClick(w.viewer, Qt.Key.Key_Right)
    assert w.viewer.row == 2 and f"3 of {w.results.rowCount()}" in w.viewer.where.text()
    qtbot.keyClick(w.viewer, Qt.Key.Key_Left)
    qtbot.keyClick(w.viewer, Qt.Key.Key_Left)
    assert w.viewer.row == 0
    qtbot.keyClick(w.viewer, Qt.Key.Key_Left)  # the first stays the first
    assert w.viewer.row == 0
    qtbot.keyClick(w.viewer, Qt.Key.Key_Right)
    qtbot.keyClick(w.viewer, Qt.Key.Key_Escape)
    assert w.pages.currentWidget() is w.splitter and w.grid.currentIndex().row() == 1
    assert w.grid.hasFocus()
    opened = _Opened()
    QDesktopServices.setUrlHandler("file", opened, "open")
    try:
        qtbot.keyClick(w.grid, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert opened.urls == [w.results.hit(1).path]


def test_ctrl_comma_opens_the_settings(qtbot, tiny_window):
    w = tiny_window
    qtbot.keyClick(w, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    assert w._settings_dialog is not None and w._settings_dialog.isVisible()
    w._settings_dialog.close()
