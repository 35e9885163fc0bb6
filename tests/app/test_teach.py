"""Teaching from the app: captions imported in the Fine-tuning tab, Start enabled only when there
are enough, failures that do not outlive the next success, and a captions editor that behaves
like an editor."""

from __future__ import annotations

import csv

from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor

from engine.config import TrainOptions
from tests.app.conftest import WAIT_MS
from tests.conftest import DATASET


def _panel(qtbot, window):
    window.open_settings()
    dialog = window._settings_dialog
    dialog.tabs.setCurrentWidget(dialog.finetune)
    panel = dialog.finetune
    qtbot.waitUntil(lambda: "have captions" in panel.count_label.text()
                    or "has captions" in panel.count_label.text(), timeout=WAIT_MS)
    return panel


def _csv(path, photos, how_many: int):
    texts: dict[str, list[str]] = {}
    with open(DATASET / "captions.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            texts.setdefault(row["image"], []).append(row["caption"])
    names = sorted(p.name for p in photos.iterdir())[:how_many]
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["image", "caption"])
        for name in names:
            for caption in texts[name][:2]:
                out.writerow([name, caption])
        out.writerow(["not-in-the-library.jpg", "a photo nobody indexed"])
    return path


def test_importing_a_csv_updates_the_count_and_enables_start(qtbot, tiny_window, photos,
                                                             tmp_path):
    panel = _panel(qtbot, tiny_window)
    assert panel.count_label.text().startswith("0 photos have captions")
    assert "at least 8" in panel.count_label.text() and not panel.start_button.isEnabled()

    panel.run_import("csv", str(_csv(tmp_path / "captions.csv", photos, 10)))
    qtbot.waitUntil(lambda: "added to 10 photos" in panel.import_label.text(), timeout=WAIT_MS)
    assert "20 captions added" in panel.import_label.text()
    assert "Not imported (1): not-in-the-library.jpg" in panel.import_label.text()
    qtbot.waitUntil(lambda: panel.count_label.text().startswith("10 photos have captions"),
                    timeout=WAIT_MS)
    assert "at least" not in panel.count_label.text() and panel.start_button.isEnabled()


def test_a_failure_banner_goes_once_the_same_job_succeeds(qtbot, tiny_window, photos, tmp_path):
    panel = _panel(qtbot, tiny_window)
    panel.run_import("csv", str(tmp_path / "no-such-file.csv"))
    qtbot.waitUntil(lambda: "Could not import" in panel.import_label.text(), timeout=WAIT_MS)
    tiny_window.show_error("train", RuntimeError("the disk is full"))
    assert tiny_window.banner.isVisible()

    panel.run_import("csv", str(_csv(tmp_path / "captions.csv", photos, 12)))
    qtbot.waitUntil(lambda: panel.start_button.isEnabled(), timeout=WAIT_MS)
    panel.base_options = TrainOptions(batch_size=8, lr=3e-3, holdout=0.25, seed=0,
                                      activate="never")
    panel.steps.setValue(10)
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    assert panel.result is not None
    assert not tiny_window.banner.isVisible()  # the old failure is out of date


def test_tab_leaves_the_captions_editor_and_ctrl_s_saves(qtbot, tiny_window, tiny_lib):
    w = tiny_window
    qtbot.waitUntil(lambda: w.results.rowCount() > 0, timeout=WAIT_MS)
    w.grid.setCurrentIndex(w.results.index(0))
    qtbot.waitUntil(lambda: w.preview.current is not None, timeout=WAIT_MS)
    editor = w.preview.captions
    editor.setFocus()
    qtbot.keyClicks(editor, "a red kite over the hill")
    qtbot.keyClick(editor, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    pid = w.preview.current.photo_id
    qtbot.waitUntil(lambda: tiny_lib.captions(pid) == ["a red kite over the hill"],
                    timeout=WAIT_MS)
    editor.setFocus()
    qtbot.keyClick(editor, Qt.Key.Key_Tab)
    assert "\t" not in editor.toPlainText() and not editor.hasFocus()


def test_captions_imported_while_a_photo_is_shown_appear_in_its_preview(qtbot, tiny_window,
                                                                       photos, tmp_path):
    """The preview shows what an import gave the photo on screen; saving the preview afterwards
    keeps the imported captions."""
    w = tiny_window
    qtbot.waitUntil(lambda: w.results.rowCount() > 0, timeout=WAIT_MS)
    first = sorted(photos.iterdir())[0]
    row = next(r for r in range(w.results.rowCount()) if w.results.hit(r).path == str(first))
    w.grid.setCurrentIndex(w.results.index(row))
    qtbot.waitUntil(lambda: w.preview.current is not None, timeout=WAIT_MS)
    assert w.preview.caption_lines() == []
    panel = _panel(qtbot, w)
    panel.run_import("csv", str(_csv(tmp_path / "captions.csv", photos, 3)))
    qtbot.waitUntil(lambda: len(w.preview.caption_lines()) == 2, timeout=WAIT_MS)
    imported = w.preview.caption_lines()
    editor = w.preview.captions
    editor.moveCursor(QTextCursor.MoveOperation.End)
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.keyClicks(editor, "the first photo")
    w.preview.save_captions()
    pid = w.preview.current.photo_id
    qtbot.waitUntil(lambda: w.library.captions(pid) == [*imported, "the first photo"],
                    timeout=WAIT_MS)
