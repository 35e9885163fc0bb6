"""Searching from the window: typed words, a dropped image, a pasted image, "Find similar"."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication

from tests.app.conftest import wait_for_results
from tests.conftest import KNOWN_QUERIES


def test_typing_a_query_shows_the_right_photo_first(qtbot, bundled_window):
    w = bundled_window
    for name, caption in list(KNOWN_QUERIES.items())[:2]:
        w.search.field.clear()
        qtbot.keyClicks(w.search.field, caption)
        wait_for_results(qtbot, w, text=caption)
        assert Path(w.results.hit(0).path).name == name
        assert w.grid.isVisible()
        assert w.grid.currentIndex().row() == 0  # the best match is selected and previewed
        tooltip = w.results.data(w.results.index(0), Qt.ItemDataRole.ToolTipRole)
        assert tooltip.split()[0] in ("strong", "good", "weak") and name in tooltip
        assert "score" not in tooltip and "0." not in tooltip.splitlines()[0]  # words, no cosine


def test_dropping_an_image_finds_that_photo_first(qtbot, bundled_window, bundled_library):
    w = bundled_window
    _lib, folder = bundled_library
    name = list(KNOWN_QUERIES)[1]
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder / name))])
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier)
    enter = QDragEnterEvent(QPoint(40, 40), *args)
    QApplication.sendEvent(w, enter)
    assert enter.isAccepted()  # the window tells the desktop it takes the image
    drop = QDropEvent(QPointF(40, 40), *args)
    QApplication.sendEvent(w, drop)
    assert drop.isAccepted()
    wait_for_results(qtbot, w, image=str(folder / name))
    assert Path(w.results.hit(0).path).name == name
    [chip] = w.search.chips()  # the image shows beside the field, as a chip
    assert chip.isVisible() and chip.path == str(folder / name)


def test_find_similar_queries_the_selected_photo(qtbot, tiny_window):
    w = tiny_window
    qtbot.keyClicks(w.search.field, "a dog")
    qtbot.keyClick(w.search.field, Qt.Key.Key_Return)
    wait_for_results(qtbot, w, text="a dog")
    target = w.results.hit(3)
    w.grid.setCurrentIndex(w.results.index(3))
    w.grid.setFocus()
    qtbot.keyClick(w.grid, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier
                   | Qt.KeyboardModifier.ShiftModifier)
    wait_for_results(qtbot, w, image=target.path)
    assert w.results.hit(0).photo_id == target.photo_id
    assert w.search.field.text() == ""  # no internal id in the field to type after
    assert [c.path for c in w.search.chips()] == [target.path]
    # a photo dropped afterwards replaces it, rather than being added to a leftover query
    other = w.results.hit(2)
    w.search_with_image(other.path)
    wait_for_results(qtbot, w, image=other.path)
    assert w.results.hit(0).photo_id == other.photo_id
    assert [c.path for c in w.search.chips()] == [other.path]


def test_pasting_an_image_searches_with_it(qtbot, tiny_window, photos):
    w = tiny_window
    first = sorted(photos.iterdir())[0]
    QGuiApplication.clipboard().setImage(QImage(str(first)))
    w.paste_image()
    qtbot.waitUntil(lambda: w.shown is not None and w.shown.image is not None, timeout=30_000)
    pasted = Path(w.shown.image)
    assert pasted.suffix == ".png" and pasted.is_relative_to(w.library.root / "cache")
    assert w.results.rowCount() > 0


def test_a_query_the_engine_cannot_understand_is_explained_in_place(qtbot, tiny_window):
    w = tiny_window
    qtbot.keyClicks(w.search.field, "beach +")
    qtbot.keyClick(w.search.field, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: w.results_stack.currentWidget() is w.notice
                    and "operator" in w.notice.text(), timeout=30_000)
    assert not w.banner.isVisible()  # a typing slip is not an error banner


def test_a_search_shows_its_likely_matches_and_show_more_brings_the_rest(qtbot, bundled_window,
                                                                        bundled_library):
    w = bundled_window
    lib, _folder = bundled_library
    caption = next(iter(KNOWN_QUERIES.values()))
    qtbot.keyClicks(w.search.field, caption)
    wait_for_results(qtbot, w, text=caption)
    first = w.results.rowCount()
    assert 8 <= first < lib.status().photos  # the likely matches, not the whole library
    assert w.more.isVisible()
    w.settings.results = 1000
    w.more.click()
    qtbot.waitUntil(lambda: w.results.rowCount() == lib.status().photos, timeout=30_000)
    shown = [w.results.hit(r).photo_id for r in range(w.results.rowCount())]
    assert len(set(shown)) == len(shown)  # the next page starts where the first ended
    assert not w.more.isVisible()
