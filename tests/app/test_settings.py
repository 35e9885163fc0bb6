"""Settings survive restarts; a damaged or newer settings file never stops the app."""

from __future__ import annotations

import json
import logging

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.settings import SETTINGS_VERSION, Settings, load_settings, save_settings, settings_path
from tests.app.conftest import close_window, open_window


def test_settings_are_saved_and_read_back(config_dir):
    save_settings(Settings(device="cpu", exclude_patterns=["*.png", "tmp*"], results=300))
    data = json.loads(settings_path().read_text())
    assert data["version"] == SETTINGS_VERSION
    s = load_settings()
    assert (s.device, s.exclude_patterns, s.results) == ("cpu", ["*.png", "tmp*"], 300)


def test_a_damaged_settings_file_falls_back_to_the_defaults(config_dir, caplog):
    config_dir.mkdir(parents=True)
    settings_path().write_text('{"version": 1, "device": "cpu"')  # cut off mid-write
    with caplog.at_level(logging.WARNING):
        assert load_settings() == Settings()
    assert "damaged" in caplog.text


def test_a_settings_file_from_a_newer_version_falls_back_to_the_defaults(config_dir, caplog):
    config_dir.mkdir(parents=True)
    settings_path().write_text(json.dumps({"version": SETTINGS_VERSION + 1, "device": "cpu"}))
    with caplog.at_level(logging.WARNING):
        assert load_settings() == Settings()
    assert "newer" in caplog.text


def test_a_bad_value_falls_back_to_its_default_only(config_dir, caplog):
    config_dir.mkdir(parents=True)
    settings_path().write_text(json.dumps({"version": 1, "device": "quantum", "results": 50,
                                           "unknown": True}))
    with caplog.at_level(logging.WARNING):
        s = load_settings()
    assert (s.device, s.results) == ("auto", 50)
    assert "device" in caplog.text


def test_the_dialog_saves_choices_and_the_window_remembers_its_size(qtbot, tiny_lib):
    w = open_window(qtbot, tiny_lib)
    w.resize(700, 520)  # inside the offscreen test screen (800 x 600)
    size = (w.width(), w.height())  # the window may not go as narrow as asked
    w.open_settings()
    dialog = w._settings_dialog
    assert dialog.catalog.text().endswith("catalog.db") and dialog.catalog.isReadOnly()
    dialog.device.setCurrentIndex(dialog.device.findData("cpu"))
    dialog.patterns.setPlainText("Screenshots\n*.gif\n")
    dialog.close()
    close_window(w)
    saved = load_settings()
    assert (saved.device, saved.exclude_patterns) == ("cpu", ["Screenshots", "*.gif"])
    again = open_window(qtbot, tiny_lib, settings=saved)
    try:
        assert (again.width(), again.height()) == size
    finally:
        close_window(again)


def test_the_models_are_listed_with_the_one_in_use(qtbot, tiny_window, tiny_lib):
    tiny_window.open_settings()
    dialog = tiny_window._settings_dialog
    qtbot.waitUntil(lambda: dialog.models.topLevelItemCount() == 1, timeout=30_000)
    item = dialog.models.topLevelItem(0)
    assert item.data(0, Qt.ItemDataRole.UserRole) == tiny_lib.active_model_record().version
    assert item.text(0) == "Untrained scratch model" and item.text(4) == "in use"  # no hash
    assert dialog.folders.count() == 1
    dialog.close()


def test_removing_the_only_folder_empties_the_library(qtbot, tiny_window, tiny_lib, photos,
                                                      monkeypatch):
    if not hasattr(tiny_lib, "remove_folder"):
        pytest.skip("this engine cannot remove a folder from a library")
    w = tiny_window
    w.open_settings()
    dialog = w._settings_dialog
    dialog.folders.setCurrentRow(0)
    assert dialog.remove_button.isEnabled()
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: QMessageBox.StandardButton.Yes)
    qtbot.mouseClick(dialog.remove_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.status.photos == 0, timeout=30_000)
    assert tiny_lib.folders() == []
    assert w.pages.currentWidget() is w.empty  # back to "Add a folder of photos"
    assert all(p.is_file() for p in photos.iterdir())  # the files themselves are untouched
    dialog.close()


def test_the_model_tab_offers_an_upgrade_only_when_the_engine_has_one(qtbot, tiny_window,
                                                                      tiny_lib, monkeypatch):
    tiny_window.open_settings()
    dialog = tiny_window._settings_dialog
    qtbot.waitUntil(lambda: dialog.models.topLevelItemCount() == 1, timeout=30_000)
    assert dialog.upgrade_button.isHidden()  # a scratch model: nothing to offer
    dialog.close()
    calls = []
    monkeypatch.setattr(tiny_lib, "upgrade_available", lambda: "a better zero-shot recipe")
    monkeypatch.setattr(tiny_lib, "upgrade", lambda tower=None, progress=None, cancel=None:
                        calls.append(tower) or "new-version")
    tiny_window.open_settings()
    dialog = tiny_window._settings_dialog
    qtbot.waitUntil(lambda: not dialog.upgrade_button.isHidden(), timeout=30_000)
    assert "better base model is available: a better zero-shot recipe" in \
        dialog.upgrade_label.text()
    qtbot.mouseClick(dialog.upgrade_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: calls == [None], timeout=30_000)
    dialog.close()


def test_the_image_model_can_be_switched_for_a_bundled_library_only(qtbot, tiny_window, tiny_lib,
                                                                    monkeypatch):
    tiny_window.open_settings()
    dialog = tiny_window._settings_dialog
    qtbot.waitUntil(lambda: dialog.models.topLevelItemCount() == 1, timeout=30_000)
    assert not dialog.tower_button.isEnabled()  # never offered before the answer comes
    qtbot.waitUntil(lambda: "brings its own" in dialog.tower.toolTip(), timeout=30_000)
    assert not dialog.tower.isEnabled() and not dialog.tower_button.isEnabled()  # scratch
    dialog.close()
    calls = []
    monkeypatch.setattr(tiny_lib, "image_tower", lambda: "lite1")
    monkeypatch.setattr(tiny_lib, "upgrade", lambda tower=None, progress=None, cancel=None:
                        calls.append(tower) or "new-version")
    tiny_window.open_settings()
    dialog = tiny_window._settings_dialog
    qtbot.waitUntil(lambda: dialog.tower.isEnabled(), timeout=30_000)
    assert dialog.tower.currentData() == "lite1" and not dialog.tower_button.isEnabled()
    dialog.tower.setCurrentIndex(dialog.tower.findData("lite0"))
    qtbot.mouseClick(dialog.tower_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: calls == ["lite0"], timeout=30_000)
    dialog.close()
