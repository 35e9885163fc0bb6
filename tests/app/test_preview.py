"""The preview pane: the selected photo, upright, with captions that are saved to the catalog."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from engine.library import Library
from tests.app.conftest import WAIT_MS, wait_for_results
from tests.conftest import TINY_MODEL


def _select_first(qtbot, w):
    qtbot.keyClicks(w.search.field, "a dog")
    qtbot.keyClick(w.search.field, Qt.Key.Key_Return)
    wait_for_results(qtbot, w, text="a dog")
    hit = w.results.hit(0)
    qtbot.waitUntil(lambda: w.preview.current is not None
                    and w.preview.current.photo_id == hit.photo_id, timeout=WAIT_MS)
    return hit


def test_edited_captions_are_saved_and_survive_reopening(qtbot, tiny_window, tiny_lib):
    w = tiny_window
    hit = _select_first(qtbot, w)
    assert w.preview.name.text() == Path(hit.path).name
    assert not w.preview.image.pixmap().isNull()  # the photo itself is shown
    assert not w.preview.save_button.isEnabled()  # nothing to save yet
    w.preview.captions.setPlainText("a brown dog on the grass\n\n  a dog playing  \n")
    assert w.preview.save_button.isEnabled()
    qtbot.mouseClick(w.preview.save_button, Qt.MouseButton.LeftButton)
    expected = ["a brown dog on the grass", "a dog playing"]
    qtbot.waitUntil(lambda: tiny_lib.captions(hit.photo_id) == expected, timeout=WAIT_MS)
    assert not w.preview.save_button.isEnabled()
    again = Library.open(tiny_lib.root, device="cpu", default_model=TINY_MODEL)
    try:
        assert again.captions(hit.photo_id) == expected
    finally:
        again.close()


def test_unsaved_captions_are_saved_when_another_photo_is_selected(qtbot, tiny_window,
                                                                    tiny_lib):
    w = tiny_window
    hit = _select_first(qtbot, w)
    w.preview.captions.setPlainText("two people on a beach")
    w.grid.setCurrentIndex(w.results.index(1))
    qtbot.waitUntil(lambda: tiny_lib.captions(hit.photo_id) == ["two people on a beach"],
                    timeout=WAIT_MS)


def test_space_hides_and_shows_the_preview(qtbot, tiny_window):
    w = tiny_window
    _select_first(qtbot, w)
    w.grid.setFocus()
    assert w.preview.isVisible()
    qtbot.keyClick(w.grid, Qt.Key.Key_Space)
    assert not w.preview.isVisible()
    qtbot.keyClick(w.grid, Qt.Key.Key_Space)
    assert w.preview.isVisible()


def test_photos_are_shown_upright(tmp_path):
    """A portrait photo stored sideways with an EXIF rotation is shown standing up."""
    from PIL import Image

    from app.preview import load_preview
    from engine.query import Hit

    path = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    Image.new("RGB", (80, 40), (200, 30, 30)).save(path, exif=exif)

    class _Lib:
        def captions(self, _pid):
            return ["a red card"]

    data = load_preview(_Lib(), Hit(1, str(path), 0.5))
    assert (data.image.width(), data.image.height()) == (40, 80)
    assert data.captions == ["a red card"]
