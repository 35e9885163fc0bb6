"""Fine-tuning from the settings dialog: it runs to the end showing progress and recall before
and after, the person can go back or keep the new model, and a cancelled run changes nothing."""

from __future__ import annotations

import csv

import pytest
from PySide6.QtCore import Qt

from engine.config import TrainOptions
from tests.app.conftest import WAIT_MS
from tests.conftest import DATASET


def _caption_every_photo(lib, photos) -> int:
    """Give each of the 12 photos its real captions from the data set."""
    texts: dict[str, list[str]] = {}
    with open(DATASET / "captions.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            texts.setdefault(row["image"], []).append(row["caption"])
    n = 0
    for path in sorted(photos.iterdir()):
        lib.set_captions(lib.photo_by_path(path).id, texts[path.name][:3])
        n += 1
    return n


@pytest.fixture
def panel(qtbot, tiny_window, tiny_lib, photos):
    n = _caption_every_photo(tiny_lib, photos)
    tiny_window.refresh_status()
    tiny_window.open_settings()
    dialog = tiny_window._settings_dialog
    dialog.tabs.setCurrentWidget(dialog.finetune)
    panel = dialog.finetune
    qtbot.waitUntil(lambda: panel.count_label.text().startswith(f"{n} photos have captions"),
                    timeout=WAIT_MS)
    yield panel
    dialog.close()


def _run(qtbot, panel, steps: int, **options) -> None:
    panel.base_options = TrainOptions(batch_size=8, lr=3e-3, holdout=0.2, seed=0, **options)
    panel.steps.setValue(steps)
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert panel.is_running() and panel.cancel_button.isEnabled()


def test_fine_tuning_runs_to_the_end_and_can_go_back(qtbot, panel, tiny_lib, tiny_window):
    original = tiny_lib.active_model_record().version
    _run(qtbot, panel, steps=30, activate="always")
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    assert panel.result is not None, panel.step_label.text()
    assert panel.progress.value() == panel.progress.maximum()  # full: re-embedding's photos
    assert "Finished after 30 steps" in panel.step_label.text()  # the last step is counted
    for column in (0, 1):  # before and after, as numbers
        assert all(float(v) >= 0 for v in panel.recall_text(column))
    assert panel.result.before == pytest.approx({k: float(v) for k, v in zip(
        ("t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10"),
        panel.recall_text(0), strict=True)}, abs=0.05)
    assert "now in use" in panel.result_label.text()
    r10 = f"top 10 for {panel.result.after['t2i_r10']:.0f}% of those photos' captions"
    assert r10 in panel.result_label.text()  # recall in words, not a table code
    new = panel.result.version
    assert tiny_lib.active_model_record().version == new != original
    assert panel.keep_button.isEnabled() and panel.back_button.isEnabled()
    # before keeping it: held-out captions searched with both models, thumbnails side by side
    qtbot.waitUntil(lambda: len(panel.compare.examples) > 0, timeout=WAIT_MS)
    for row, ex in enumerate(panel.compare.examples):
        before, after = panel.compare.tiles(row, "before"), panel.compare.tiles(row, "after")
        assert len(before) == len(after) == min(4, len(ex.before)) > 0
        assert all(not t.pixmap().isNull() for t in before + after)
        assert [t.toolTip() for t in after] == [p for _i, p in ex.after]
        framed = [t.toolTip() for t in before + after if t.property("right")]
        assert all(p == ex.path for p in framed)  # the green frame marks the captioned photo
        assert (ex.after_rank is None) == (ex.path not in [p for _i, p in ex.after])
    # in the dialog as it opens, each part lies below the one before: none is drawn over another
    parts = [panel.step_label, panel.table, panel.result_label, panel.compare]
    qtbot.wait(300)  # the layout takes in the last texts
    tops = [w.mapTo(panel, w.rect().topLeft()).y() for w in parts]
    bottoms = [w.mapTo(panel, w.rect().bottomLeft()).y() for w in parts]
    assert all(b < t for b, t in zip(bottoms[:-1], tops[1:], strict=True)), (tops, bottoms)
    # Keep and Go back are in sight without scrolling, whatever the comparison's length
    assert not panel.keep_button.visibleRegion().isEmpty()
    assert not panel.back_button.visibleRegion().isEmpty()
    tiles = [t for row in range(len(panel.compare.examples))
             for model in ("before", "after") for t in panel.compare.tiles(row, model)]
    assert all(t.mapTo(panel.compare, t.rect().bottomLeft()).y() < panel.compare.height()
               for t in tiles)  # every tile within the comparison, none cut off

    qtbot.mouseClick(panel.back_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tiny_lib.active_model_record().version == original,
                    timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "in use again" in panel.result_label.text(), timeout=WAIT_MS)

    # A second, long run cancelled midway leaves the model in use as it was.
    _run(qtbot, panel, steps=100_000, activate="always")
    qtbot.waitUntil(lambda: "loss" in panel.step_label.text(), timeout=WAIT_MS)  # live loss
    assert panel.progress.value() > 0
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    assert "Cancelled" in panel.step_label.text()
    assert tiny_lib.active_model_record().version == original
    assert not tiny_window.banner.isVisible()  # cancelling is not an error


def test_keeping_a_model_that_was_not_activated_switches_to_it(qtbot, panel, tiny_lib):
    original = tiny_lib.active_model_record().version
    _run(qtbot, panel, steps=20, activate="never")
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    assert panel.result is not None and not panel.result.activated
    assert tiny_lib.active_model_record().version == original
    new = panel.result.version
    qtbot.mouseClick(panel.keep_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tiny_lib.active_model_record().version == new, timeout=WAIT_MS)
    assert not panel.keep_button.isEnabled()


def test_too_few_captions_is_explained_before_a_run(qtbot, tiny_window, tiny_lib):
    tiny_lib.set_captions(tiny_lib.browse()[0].photo_id, ["one caption"])
    tiny_window.open_settings()
    panel = tiny_window._settings_dialog.finetune
    qtbot.waitUntil(lambda: "at least 8 captioned photos" in panel.count_label.text(),
                    timeout=WAIT_MS)
    assert "caption 7 more" in panel.count_label.text()
    assert not panel.start_button.isEnabled()  # Start waits for enough captions
    panel.start()  # even if asked, nothing runs
    assert not panel.is_running() and not tiny_window.banner.isVisible()
    tiny_window._settings_dialog.close()


def test_effort_is_quick_or_thorough_and_the_steps_wait_under_advanced(qtbot, panel):
    from app.finetune import QUICK_STEPS, THOROUGH_STEPS

    assert not panel.steps.isVisible() and not panel.advanced.isChecked()
    panel.thorough.click()
    assert panel.steps.value() == THOROUGH_STEPS and panel.settings.train_steps == THOROUGH_STEPS
    panel.quick.click()
    assert panel.steps.value() == QUICK_STEPS
    panel.advanced.setChecked(True)
    assert panel.steps.isVisible()
    panel.steps.setValue(350)  # a number of its own: neither effort is ticked
    assert not panel.quick.isChecked() and not panel.thorough.isChecked()
