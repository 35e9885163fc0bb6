"""Settings → Model lists the CLIP weights found on the computer; Try switches the library to
one (in the background, with the held-out comparison), and Go back returns to the model before."""

from __future__ import annotations

import csv

import pytest
from PySide6.QtCore import Qt

from tests.app.conftest import WAIT_MS, wait_for_results
from tests.conftest import DATASET

pytest.importorskip("open_clip")


@pytest.fixture
def clip_on_the_computer(tmp_path, monkeypatch):
    """A home folder of the test's own holding a tiny CLIP in its Hugging Face cache."""
    from tests.engine.test_discover import TINY_CLIP, save_in_hub

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "HF_HOME", "HF_HUB_CACHE",
                "HUGGINGFACE_HUB_CACHE", "RCLIP_DATADIR"):
        monkeypatch.delenv(var, raising=False)
    import torch
    from open_clip.model import CLIP

    torch.manual_seed(0)
    return save_in_hub(CLIP(**TINY_CLIP), home / ".cache" / "huggingface" / "hub")


def _caption(lib, folder) -> int:
    with open(DATASET / "captions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    captioned = 0
    for photo in sorted(folder.iterdir()):
        texts = [c for name, c in rows if name == photo.name]
        if texts:
            lib.set_captions(lib.photo_by_path(photo).id, texts)
            captioned += 1
    return captioned


def test_try_a_found_model_then_go_back(qtbot, tiny_window, tiny_lib, photos,
                                        clip_on_the_computer):
    w = tiny_window
    assert _caption(tiny_lib, photos) == 12
    before = tiny_lib.active_model_record().version
    w.open_settings()
    dialog = w._settings_dialog
    panel = dialog.found
    dialog.tabs.setCurrentIndex(1)  # the Model tab: looking starts when it is shown
    qtbot.waitUntil(lambda: panel.list.topLevelItemCount() == 1, timeout=WAIT_MS)
    item = panel.list.topLevelItem(0)
    assert item.text(0).startswith("custom CLIP") and item.text(5) == "Hugging Face cache"
    assert str(clip_on_the_computer) in item.toolTip(0)
    assert not panel.try_button.isEnabled()  # nothing chosen yet

    panel.list.setCurrentItem(item)
    qtbot.mouseClick(panel.try_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.trial is not None, timeout=WAIT_MS)
    assert tiny_lib.active_model_record().family == "openclip"
    assert "Now using custom CLIP" in panel.result.text()
    assert "12 held-out captioned photos" in panel.result.text()
    assert panel.back_button.isVisible() and w.statusbar.activity("try") is None
    qtbot.keyClicks(w.search.field, "a dog")
    qtbot.keyClick(w.search.field, Qt.Key.Key_Return)
    wait_for_results(qtbot, w, text="a dog")

    qtbot.mouseClick(panel.back_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tiny_lib.active_model_record().version == before, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not panel.back_button.isVisible(), timeout=WAIT_MS)
    assert "Back to the model used before" in panel.result.text()

    def listed_in_use():  # the models list: both, the previous one in use again
        rows = [dialog.models.topLevelItem(i) for i in range(dialog.models.topLevelItemCount())]
        return len(rows) == 2 and [r.data(0, Qt.ItemDataRole.UserRole) for r in rows
                                   if r.text(4) == "in use"] == [before]

    qtbot.waitUntil(listed_in_use, timeout=WAIT_MS)
    dialog.close()
