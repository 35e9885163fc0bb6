"""The keyboard: Ctrl+F, arrows from the search field into the grid, Enter opens, Ctrl+,."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices

from tests.app.conftest import wait_for_results


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
    opened = _Opened()
    QDesktopServices.setUrlHandler("file", opened, "open")
    try:
        qtbot.keyClick(w.grid, Qt.Key.Key_Return)
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert opened.urls == [w.results.hit(1).path]


def test_ctrl_comma_opens_the_settings(qtbot, tiny_window):
    w = tiny_window
    qtbot.keyClick(w, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    assert w._settings_dialog is not None and w._settings_dialog.isVisible()
    w._settings_dialog.close()
