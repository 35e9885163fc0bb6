"""The window before and between searches: the library to browse, a first query that waits for
the model instead of failing or hanging, and a GPU setting that cannot break search."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest
from PySide6.QtCore import Qt

from tests.app.conftest import WAIT_MS, close_window, open_window, wait_for_results
from tests.conftest import dataset_images


def _dates(window) -> list:
    return [window.results.hit(r).date for r in range(window.results.rowCount())]


def test_with_no_query_the_whole_library_shows_newest_first(qtbot, tiny_lib, photos):
    names = sorted(p.name for p in photos.iterdir())
    for i, name in enumerate(names):  # a distinct date for each photo, the last name newest
        os.utime(photos / name, (1_600_000_000 + i * 86_400,) * 2)
    tiny_lib.add_folders([photos])
    w = open_window(qtbot, tiny_lib)
    try:
        qtbot.waitUntil(lambda: w.results.rowCount() == len(names), timeout=WAIT_MS)
        assert w.results_stack.currentWidget() is w.grid and w.results.browsing
        shown = [os.path.basename(w.results.hit(r).path) for r in range(len(names))]
        assert shown == names[::-1]
        assert _dates(w) == sorted(_dates(w), reverse=True)
        # grouped by month: the first photo of each month names it, and the month at the top
        # of the view stays in a header over the grid
        months = [w.results.index(r).data() for r in range(len(names))]
        firsts = [r for r in range(len(names)) if r == 0
                  or _dates(w)[r].month != _dates(w)[r - 1].month]
        assert [m for m in months if m] == [f"{_dates(w)[r]:%B %Y}" for r in firsts]
        assert w.grid.month_header.isVisible()
        assert w.grid.month_header.text() == f"{_dates(w)[0]:%B %Y}"
        # a query shows results; clearing it (Esc) returns to the library
        qtbot.keyClicks(w.search.field, "a dog")
        wait_for_results(qtbot, w, text="a dog")
        assert not w.results.browsing and not w.grid.month_header.isVisible()
        w.search.field.setFocus()
        qtbot.keyClick(w.search.field, Qt.Key.Key_Escape)
        qtbot.waitUntil(lambda: w.results.browsing and w.results.rowCount() == len(names),
                        timeout=WAIT_MS)
    finally:
        close_window(w)


def test_photos_appear_and_can_be_found_while_a_folder_is_indexed(qtbot, tiny_lib, tmp_path,
                                                                 monkeypatch):
    folder = tmp_path / "many"
    folder.mkdir()
    for p in dataset_images()[:300]:
        shutil.copy2(p, folder / p.name)
    model_type = type(tiny_lib.model)
    real = model_type.encode_images

    def slow(model, pixels):  # an import long enough to look at midway
        time.sleep(0.3)
        return real(model, pixels)

    monkeypatch.setattr(model_type, "encode_images", slow)
    w = open_window(qtbot, tiny_lib)
    seen: list[str] = []
    w.ops.indexing.connect(seen.append)
    try:
        assert w.pages.currentWidget() is w.empty
        w.add_folder(str(folder))
        qtbot.waitUntil(lambda: w.results.browsing and w.results.rowCount() > 0, timeout=WAIT_MS)
        assert w.pages.currentWidget() is w.splitter  # the empty page gave way at once
        assert w.statusbar.activity("index") is not None and 0 < w.status.photos < 300
        qtbot.keyClicks(w.search.field, "a dog")
        wait_for_results(qtbot, w, text="a dog")
        assert w.statusbar.activity("index") is not None  # found before the import ended
        qtbot.waitUntil(lambda: w.statusbar.activity("index") is None, timeout=WAIT_MS)
        assert any("photos/s" in t and "left" in t for t in seen)  # the pace and what is left
        qtbot.waitUntil(lambda: w.status.photos == 300, timeout=WAIT_MS)
    finally:
        close_window(w)


def test_a_query_typed_while_the_model_loads_waits_and_then_runs(qtbot, tiny_lib, photos,
                                                                 monkeypatch):
    tiny_lib.add_folders([photos])
    release = threading.Event()
    real = type(tiny_lib).warm_up

    def slow_warm_up(lib):
        release.wait(WAIT_MS / 1000)
        real(lib)

    monkeypatch.setattr(type(tiny_lib), "warm_up", slow_warm_up)
    w = open_window(qtbot, tiny_lib)
    try:
        qtbot.keyClicks(w.search.field, "a dog")
        w.search.search_now()
        qtbot.waitUntil(lambda: "Getting search ready" in w.notice.text(), timeout=WAIT_MS)
        assert w.statusbar.activity("warm") is not None
        assert not w.banner.isVisible()  # waiting is not an error
        release.set()
        wait_for_results(qtbot, w, text="a dog")
        assert w.statusbar.activity("warm") is None
    finally:
        release.set()
        close_window(w)


def test_a_gpu_chosen_on_a_computer_without_one_runs_on_the_cpu(tmp_path, monkeypatch):
    from app.settings import Settings
    from app.window import open_library
    from engine.models.devices import gpu_present

    if gpu_present():
        pytest.skip("this computer has a CUDA GPU: nothing to fall back from")
    monkeypatch.setenv("CHIKAKU_LIBRARY", str(tmp_path / "lib"))
    monkeypatch.setattr("engine.library.DEFAULT_MODEL",
                        {"family": "scratch", "dim": 32, "width": 16, "input_size": 32})
    lib = open_library(Settings(device="cuda"))
    try:
        assert lib.config.device == "cpu"
        assert str(lib.model.device) == "cpu"  # the model loads instead of failing
    finally:
        lib.close()


def test_the_gpu_is_offered_only_where_there_is_one(monkeypatch):
    import engine.models.devices as devices
    from app.settings_dialog import device_choices

    monkeypatch.setattr(devices, "gpu_present", lambda: False)
    assert [value for value, _ in device_choices()] == ["auto", "cpu"]
    monkeypatch.setattr(devices, "gpu_present", lambda: True)
    assert "cuda" in [value for value, _ in device_choices()]
