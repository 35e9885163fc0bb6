"""Settings → Library: exclusion patterns say what they will do, apply at once, and report."""

from __future__ import annotations

import shutil

from PySide6.QtCore import Qt

from app import autostart
from tests.app.conftest import WAIT_MS, close_window, open_window
from tests.conftest import dataset_images


def test_a_pattern_shows_its_count_first_and_that_many_photos_leave(qtbot, tiny_lib, photos):
    drafts = photos / "drafts"
    drafts.mkdir()
    for p in dataset_images()[40:43]:
        shutil.copy2(p, drafts / p.name)
    tiny_lib.add_folders([photos])
    kept = tiny_lib.photo_by_path(next(drafts.iterdir()))
    tiny_lib.set_captions(kept.id, ["a caption worth keeping"])
    w = open_window(qtbot, tiny_lib)
    try:
        w.open_settings()
        dialog = w._settings_dialog
        qtbot.keyClicks(dialog.patterns, "drafts")
        qtbot.waitUntil(lambda: "takes 3 photos out" in dialog.pattern_effect.text(),
                        timeout=WAIT_MS)
        assert tiny_lib.status().photos == 15  # nothing has left yet
        assert dialog.apply_patterns_button.isEnabled()
        qtbot.mouseClick(dialog.apply_patterns_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "3 photos left the library" in dialog.pattern_effect.text(),
                        timeout=WAIT_MS)
        assert tiny_lib.status().photos == 12 and tiny_lib.status().kept_captions == 1
        qtbot.waitUntil(lambda: w.status is not None and w.status.photos == 12, timeout=WAIT_MS)
        assert w.settings.exclude_patterns == ["drafts"]
        assert not dialog.apply_patterns_button.isEnabled()
    finally:
        close_window(w)


def test_keeping_the_library_current_when_closed_installs_the_login_item(qtbot, tiny_window,
                                                                          tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    w = tiny_window
    w.open_settings()
    box = w._settings_dialog.background_box
    assert not box.isChecked()
    box.setChecked(True)
    assert autostart.enabled()
    assert autostart.desktop_command(autostart.entry_path())[-1] == w.status.root
    box.setChecked(False)
    assert not autostart.enabled()
