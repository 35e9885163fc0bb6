"""The results grid: 10,000 results stay cheap, thumbnails come from a disk cache, upright."""

from __future__ import annotations

import os
import sys
import threading
from datetime import datetime

import pytest
from PySide6.QtCore import Qt

from app.results import SORT_DATE
from app.thumbs import load_thumbnail
from engine.query import Hit
from tests.app.conftest import WAIT_MS


def _synthetic_hits(n: int) -> list[Hit]:
    return [Hit(i + 1, f"/nowhere/photo-{i:05d}.jpg", 0.5 - i / (2 * n),
                datetime(2020, 1, 1 + i % 28), strength=1.0 - i / n) for i in range(n)]


def test_ten_thousand_results_ask_only_for_visible_thumbnails(qtbot, tiny_window):
    w = tiny_window
    before = w.loader.requested
    w.show_hits(_synthetic_hits(10_000))
    assert w.results.rowCount() == 10_000
    assert w.grid.isVisible()
    qtbot.waitUntil(lambda: w.loader.requested > before, timeout=WAIT_MS)
    qtbot.wait(200)  # let the view paint and ask for whatever it wants
    first_screen = w.loader.requested - before
    assert 0 < first_screen <= 200
    w.grid.scrollToBottom()
    qtbot.wait(200)
    assert w.loader.requested - before <= 2 * first_screen + 50  # one more screenful at most
    last = w.results.index(9_999)
    assert w.results.data(last, Qt.ItemDataRole.ToolTipRole).endswith("photo-09999.jpg")


def test_a_new_query_drops_thumbnails_still_coming_for_the_old_one(qtbot, tiny_window):
    w = tiny_window
    w.show_hits(_synthetic_hits(500))
    old_generation = w.loader.generation
    w.show_hits(_synthetic_hits(20))
    assert w.loader.generation == old_generation + 1
    w.loader._arrived("/nowhere/photo-00003.jpg", old_generation, None)  # a late old result
    assert w.loader.icon("/nowhere/photo-00003.jpg") is None


def test_minimum_strength_and_date_order_rearrange_the_results(tiny_window):
    w = tiny_window
    w.show_hits(_synthetic_hits(100))
    w.search.min_score_box.setValue(0.5)
    assert w.results.rowCount() == 51  # strengths 1.00 down to 0.50, whatever the raw cosine
    w.search.sort_box.setCurrentIndex(w.search.sort_box.findData(SORT_DATE))
    dates = [w.results.hit(r).date for r in range(w.results.rowCount())]
    assert dates == sorted(dates, reverse=True)
    w.search.min_score_box.setValue(0.0)
    assert w.results.rowCount() == 100


def test_thumbnails_are_cached_on_disk_and_upright(tmp_path):
    from PIL import Image

    photo = tmp_path / "portrait.jpg"
    exif = Image.Exif()
    exif[0x0112] = 8  # stored sideways: rotate 90° counter-clockwise to view
    Image.new("RGB", (600, 300), (20, 120, 200)).save(photo, exif=exif)
    cache = tmp_path / "thumbs"
    first = load_thumbnail(str(photo), cache)
    assert (first.width(), first.height()) == (128, 256)  # upright, long side 256
    cached = list(cache.rglob("*.jpg"))
    assert len(cached) == 1
    second = load_thumbnail(str(photo), cache)  # read back from the cache
    assert (second.width(), second.height()) == (128, 256)


@pytest.mark.parametrize("width", [420, 800, 1200, 1920])
def test_the_columns_fill_the_width_of_the_grid(qtbot, tiny_window, width):
    """No column's worth of blank at the right, whatever the width (and whether or not the
    results need scrolling)."""
    from app.results import ResultsModel, ResultsView

    view = ResultsView()
    qtbot.addWidget(view)
    model = ResultsModel(tiny_window.loader)
    view.setModel(model)
    model.set_hits(_synthetic_hits(40))
    view.resize(width, 700)
    view.show()
    qtbot.waitExposed(view)
    qtbot.wait(50)
    cell = view.gridSize().width()
    columns = max(1, view.viewport().width() // cell)
    first_row = [view.visualRect(model.index(i)) for i in range(columns)]
    assert len({r.top() for r in first_row}) == 1  # all on one row
    assert view.visualRect(model.index(columns)).top() > first_row[0].top()  # then it wraps
    assert view.viewport().width() - first_row[-1].left() < 2 * cell  # ends near the edge
    assert view.viewport().width() - columns * cell < cell  # no room left for another column


def test_cells_look_as_the_style_draws_them(qtbot, tiny_window, monkeypatch):
    """The grid draws its cells itself for speed: thumbnails, the month names, a selected
    photo's frame and a mark come out as the style's own drawing of the same cells."""
    from app.results import ResultsModel

    w = tiny_window
    w.show_home()
    qtbot.waitUntil(lambda: w.results.browsing and w.results.rowCount() == 12, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: all(w.loader.pixmap(w.results.hit(r).path) is not None
                                for r in range(6)), timeout=WAIT_MS)
    w.grid.selectionModel().select(w.results.index(1),
                                   w.grid.selectionModel().SelectionFlag.Select)
    w.results.set_marks({w.results.hit(2).photo_id: True})
    qtbot.wait(50)
    ours = w.grid.viewport().grab().toImage()
    monkeypatch.setattr(ResultsModel, "cell", lambda self, row: None)  # the style's drawing
    w.grid.viewport().repaint()
    style = w.grid.viewport().grab().toImage()
    assert (ours.width(), ours.height()) == (style.width(), style.height())
    differ = sum(1 for y in range(0, style.height(), 2) for x in range(0, style.width(), 2)
                 if ours.pixel(x, y) != style.pixel(x, y))
    assert differ < 0.002 * (style.width() // 2) * (style.height() // 2)  # a month name's antialiasing
    assert ours.pixel(20, 20) == style.pixel(20, 20)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities: Linux")
def test_icons_are_made_below_the_interface_s_priority(qtbot, tiny_window, monkeypatch):
    """A scroll's frames come first: the threads making icons run at a lower priority than the
    interface thread (on two cores, scrolling's slowest frames were those in which icons were
    being made beside it)."""
    import app.thumbs as thumbs

    seen: list[int] = []

    def made(path, cache_dir, pixels):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        raise OSError("no such photo")

    monkeypatch.setattr(thumbs, "icon_image", made)
    w = tiny_window
    w.show_hits(_synthetic_hits(30))
    qtbot.waitUntil(lambda: len(seen) >= 5, timeout=WAIT_MS)
    interface = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    # the same for every job (not a step down each time a thread takes one)
    assert set(seen) == {min(19, interface + thumbs.WORKER_NICENESS)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == interface
