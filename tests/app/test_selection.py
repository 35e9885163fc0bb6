"""Image chips in the search bar, several photos selected at once and what can be done with
them, file names shown or not, and the thumbnail size."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, QSize, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication

from app.thumbs import ICON_SIDES
from engine.export import copy_photos
from tests.app.conftest import WAIT_MS, wait_for_results


def _search(qtbot, w, words: str) -> None:
    w.search.field.clear()
    qtbot.keyClicks(w.search.field, words)
    qtbot.keyClick(w.search.field, Qt.Key.Key_Return)
    wait_for_results(qtbot, w, text=words)


def _drop(w, path: str, modifiers=Qt.KeyboardModifier.NoModifier) -> bool:
    """Drag a file over the window and drop it there: whether the window took it."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(path)])
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, modifiers)
    QApplication.sendEvent(w, QDragEnterEvent(QPoint(40, 40), *args))
    drop = QDropEvent(QPointF(40, 40), *args)
    QApplication.sendEvent(w, drop)
    return drop.isAccepted()


def _chips(w) -> list[str]:
    return [c.path for c in w.search.chips()]


def test_an_image_shows_as_a_chip_that_a_new_one_replaces_unless_added(qtbot, tiny_window,
                                                                       photos):
    w = tiny_window
    first, second, third = (str(p) for p in sorted(photos.iterdir())[:3])
    assert _drop(w, first)
    wait_for_results(qtbot, w, image=first)
    assert _chips(w) == [first]
    chip = w.search.chips()[0]
    assert chip.isVisible() and not chip.picture.pixmap().isNull()  # a thumbnail, not a name
    # a second image replaces the first...
    _drop(w, second)
    qtbot.waitUntil(lambda: w.shown is not None and w.shown.images == (second,), timeout=WAIT_MS)
    assert _chips(w) == [second]
    # ... unless Shift is held: then both are searched with
    _drop(w, third, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: w.shown is not None and w.shown.images == (second, third),
                    timeout=WAIT_MS)
    assert _chips(w) == [second, third]
    assert w.results.rowCount() > 0
    # words typed beside the chips add to them; no internal id ever appears in the field
    qtbot.keyClicks(w.search.field, "dog")
    qtbot.keyClick(w.search.field, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: w.shown.text == "dog" and w.shown.images == (second, third),
                    timeout=WAIT_MS)
    assert "photo:" not in w.search.field.text()
    # the chip's button takes its image out, and the search runs again without it
    w.search.chips()[0].remove.click()
    qtbot.waitUntil(lambda: w.shown.images == (third,), timeout=WAIT_MS)
    assert _chips(w) == [third]
    # Backspace at the start of the field takes out the chip before it
    w.search.field.clear()
    w.search.field.setFocus()
    qtbot.keyClick(w.search.field, Qt.Key.Key_Backspace)
    assert _chips(w) == []


def test_find_similar_and_add_to_the_image_search_make_chips(qtbot, tiny_window):
    w = tiny_window
    _search(qtbot, w, "a dog")
    one, two = w.results.hit(1), w.results.hit(4)
    w.find_similar(one.photo_id)
    wait_for_results(qtbot, w, image=one.path)
    assert _chips(w) == [one.path] and w.search.field.text() == ""
    row = w.results.row_of(two.photo_id)
    if row < 0:  # not among the results of the first photo: find it from the first search
        w.find_similar(two.photo_id)
        wait_for_results(qtbot, w, image=two.path)
        w.search_with_image(one.path, add=True)
        qtbot.waitUntil(lambda: set(_chips(w)) == {one.path, two.path}, timeout=WAIT_MS)
    else:
        w.find_similar(two.photo_id, add=True)
        qtbot.waitUntil(lambda: _chips(w) == [one.path, two.path], timeout=WAIT_MS)
    qtbot.waitUntil(lambda: len(w.shown.images) == 2, timeout=WAIT_MS)
    assert "photo:" not in w.search.field.text()


def test_a_pasted_image_shows_as_a_chip(qtbot, tiny_window, photos):
    w = tiny_window
    QGuiApplication.clipboard().setImage(QImage(str(sorted(photos.iterdir())[0])))
    w.paste_image()
    qtbot.waitUntil(lambda: w.shown is not None and w.shown.image is not None, timeout=WAIT_MS)
    assert _chips(w) == [w.shown.image] and "photo:" not in w.search.field.text()


def test_photos_drag_out_of_the_grid_as_files(qtbot, tiny_window):
    w = tiny_window
    _search(qtbot, w, "a dog")
    assert w.grid.dragEnabled()
    assert w.results.flags(w.results.index(0)) & Qt.ItemFlag.ItemIsDragEnabled
    mime = w.results.mimeData([w.results.index(0), w.results.index(2)])
    assert [u.toLocalFile() for u in mime.urls()] == [w.results.hit(0).path,
                                                       w.results.hit(2).path]
    assert mime.text().splitlines() == [w.results.hit(0).path, w.results.hit(2).path]


def _click(qtbot, w, row: int, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    rect = w.grid.visualRect(w.results.index(row))
    qtbot.mouseClick(w.grid.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())


def test_shift_and_ctrl_select_several_photos_and_copy_puts_exactly_those_in_a_folder(
        qtbot, tiny_window, tmp_path):
    w = tiny_window
    _search(qtbot, w, "a dog")
    _click(qtbot, w, 1)
    _click(qtbot, w, 3, Qt.KeyboardModifier.ShiftModifier)  # 1, 2, 3
    _click(qtbot, w, 5, Qt.KeyboardModifier.ControlModifier)  # and 5
    chosen = [w.results.hit(r).path for r in (1, 2, 3, 5)]
    assert [h.path for h in w.grid.selected_hits()] == chosen
    target = tmp_path / "export"
    target.mkdir()
    (target / Path(chosen[0]).name).write_bytes(b"a file of the person's, kept")
    w.selection.copy_to_folder(str(target))
    qtbot.waitUntil(lambda: "Copied 4 photos" in w.statusbar.currentMessage(), timeout=WAIT_MS)
    names = sorted(p.name for p in target.iterdir())
    first = Path(chosen[0])
    assert len(names) == 5  # the four photos and the file that was there
    assert (target / first.name).read_bytes() == b"a file of the person's, kept"
    assert (target / f"{first.stem} (2){first.suffix}").read_bytes() == first.read_bytes()
    for path in chosen[1:]:
        assert (target / Path(path).name).read_bytes() == Path(path).read_bytes()
    # the context menu speaks of the four
    w.selection_menu(w.results.hit(1))
    texts = [a.text() for a in w.context_menu.actions()]
    assert "Copy the 4 photos to a folder…" in texts and "Copy paths" in texts
    # Ctrl+C puts them on the clipboard as files
    w.grid.setFocus()
    qtbot.keyClick(w.grid, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    urls = QGuiApplication.clipboard().mimeData().urls()
    assert [u.toLocalFile() for u in urls] == chosen
    # select all, from the grid
    w.select_all_action.trigger()
    assert len(w.grid.selected_hits()) == w.results.rowCount()


def test_copying_reports_each_photo_it_could_not_copy_and_copies_the_rest(tmp_path, photos):
    target = tmp_path / "out"
    target.mkdir()
    good = sorted(photos.iterdir())[:2]
    gone = tmp_path / "gone.jpg"
    report = copy_photos([str(good[0]), str(gone), str(good[1]), str(good[0])], target)
    assert [Path(d).name for _s, d in report.copied] == [good[0].name, good[1].name]
    assert report.failed == [(str(gone), "the file is no longer there")]
    assert "could not copy gone.jpg (the file is no longer there)" in report.summary()
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in good)
    again = copy_photos([str(good[0])], target)  # never over the earlier copy
    assert Path(again.copied[0][1]).name == f"{good[0].stem} (2){good[0].suffix}"


def test_file_names_are_hidden_by_default_and_shown_by_the_setting(qtbot, tiny_window):
    w = tiny_window
    _search(qtbot, w, "a dog")
    index = w.results.index(0)
    assert index.data(Qt.ItemDataRole.DisplayRole) == ""
    short = w.grid.gridSize().height()
    w.names_action.setChecked(True)
    assert index.data(Qt.ItemDataRole.DisplayRole) == Path(w.results.hit(0).path).name
    assert w.grid.gridSize().height() > short  # room for the name under the photo
    assert w.settings.show_names


def test_thumbnails_grow_and_shrink_with_ctrl_plus_minus_and_the_slider(qtbot, tiny_window):
    w = tiny_window
    _search(qtbot, w, "a dog")
    assert w.grid.iconSize() == QSize(160, 160)
    cell = w.grid.gridSize()
    w.grid.setFocus()
    qtbot.keyClick(w.grid, Qt.Key.Key_Plus, Qt.KeyboardModifier.ControlModifier)
    assert w.grid.iconSize().width() > 160
    assert w.grid.gridSize().height() > cell.height()  # bigger cells, fewer to a row
    assert w.grid.viewport().width() - w.grid.gridSize().width() * (
        w.grid.viewport().width() // w.grid.gridSize().width()) < w.grid.gridSize().width()
    assert w.settings.thumb_size == w.grid.iconSize().width()
    w.thumb_slider.setValue(0)
    assert w.grid.iconSize() == QSize(ICON_SIDES[0], ICON_SIDES[0])
    # the thumbnails come at the new size, in physical pixels for the screen
    qtbot.waitUntil(lambda: w.loader.icon(w.results.hit(0).path) is not None, timeout=WAIT_MS)
    pixmap = w.loader.icon(w.results.hit(0).path).pixmap(QSize(ICON_SIDES[0], ICON_SIDES[0]))
    assert pixmap.width() >= ICON_SIDES[0]


def test_thumbnails_are_made_at_the_screens_pixel_ratio(qtbot, tiny_window):
    w = tiny_window
    w.loader.set_size(128, 2.0)
    assert w.loader.pixels == 256
    _search(qtbot, w, "a dog")
    path = w.results.hit(0).path
    qtbot.waitUntil(lambda: w.loader.icon(path) is not None, timeout=WAIT_MS)
    image = w.loader.icon(path).pixmap(QSize(128, 128), 2.0)
    assert image.width() == 256 and image.devicePixelRatio() == 2.0

