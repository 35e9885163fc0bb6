"""Long jobs from the window: the empty library, adding a folder, failures, responsiveness."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer

from app.statusbar import SkippedDialog
from tests.app.conftest import WAIT_MS, close_window, open_window, wait_for_results
from tests.conftest import dataset_images


def test_an_empty_library_says_what_to_do(qtbot, tiny_lib):
    w = open_window(qtbot, tiny_lib)
    try:
        assert w.pages.currentWidget() is w.empty and w.empty.isVisible()
        assert "Add a folder" in w.empty.button.text() and w.empty.button.isVisible()
        assert not w.grid.isVisible()
    finally:
        close_window(w)


def test_a_failed_job_shows_a_message_and_the_window_stays_usable(qtbot, tiny_window):
    w = tiny_window
    w.add_folder("/no/such/folder/anywhere")
    qtbot.waitUntil(lambda: w.banner.isVisible(), timeout=WAIT_MS)
    assert "Could not add the folder" in w.banner.text()
    assert "no such folder" in w.banner.text() and "Traceback" not in w.banner.text()
    assert w.statusbar.activity("index") is None  # the progress display has ended
    qtbot.keyClicks(w.search.field, "a dog")
    wait_for_results(qtbot, w, text="a dog")
    assert w.status.photos == 12 and w.results.rowCount() > 0  # the library is as it was


def test_a_library_that_cannot_open_is_explained(qtbot):
    def broken():
        raise RuntimeError("the model file is damaged")

    w = open_window(qtbot, library_factory=broken)
    try:
        qtbot.waitUntil(lambda: w.banner.isVisible(), timeout=WAIT_MS)
        assert "Could not open the library: the model file is damaged" in w.banner.text()
        assert "damaged" in w.loading.label.text()
    finally:
        close_window(w)


def test_the_window_keeps_responding_while_a_folder_is_indexed(qtbot, tiny_lib, tmp_path):
    """Adding a folder of 40 photos never stalls the UI thread, and its photos appear."""
    folder = tmp_path / "forty"
    folder.mkdir()
    for p in dataset_images()[:40]:
        shutil.copy2(p, folder / p.name)
    (folder / "notes.jpg").write_text("not a photo")
    w = open_window(qtbot, tiny_lib)
    ticks: list[float] = []
    timer = QTimer(w, interval=10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    shown: list[str] = []
    w.ops.indexing.connect(shown.append)
    try:
        timer.start()
        w.add_folder(str(folder))
        qtbot.waitUntil(lambda: w.status is not None and w.status.photos == 40
                        and w.statusbar.activity("index") is None, timeout=WAIT_MS)
        timer.stop()
        gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
        # The one timing requirement: the UI thread never stalls while indexing.
        longest = max(gaps, default=0.0)
        assert longest < 0.1, f"the UI thread stalled for {longest:.3f} s"
        assert w.pages.currentWidget() is w.splitter
        assert "40 photos" in w.statusbar.library_label.text()
        assert w.statusbar.skipped_button.isVisible()
        assert any(t.startswith("Indexing photos") for t in shown)  # progress was shown
        assert "1 skipped" in w.statusbar.skipped_button.text()
        qtbot.mouseClick(w.statusbar.skipped_button, Qt.MouseButton.LeftButton)
        dialog = w.findChild(SkippedDialog)
        assert dialog is not None and dialog.table.rowCount() == 1
        assert dialog.table.item(0, 0).text().endswith("notes.jpg")
        assert "not an image" in dialog.table.item(0, 1).text()
    finally:
        close_window(w)


def test_the_window_can_show_before_the_model_libraries_load():
    """Importing the window pulls in neither torch nor the engine's library: those load in a
    worker after the window is on screen."""
    code = ("import sys, app.main, app.window\n"
            "heavy = sorted(m for m in ('torch', 'engine.library', 'faiss') if m in sys.modules)\n"
            "print(heavy)\n"
            "sys.exit(1 if heavy else 0)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stdout + run.stderr
