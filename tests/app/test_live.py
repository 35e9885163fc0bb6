"""A live library: the real watcher keeps the open window's library current with its folders.

Each test opens the real window over a tiny-model library with the engine's watcher (short quiet
periods, so a change is picked up in about a second), changes files on disk, and waits for what a
person would see: the photo found, the deleted one gone from the grid, the preview's new path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from app.statusbar import StatusBar
from engine.watching.watcher import WatchOptions
from tests.app.conftest import WAIT_MS, close_window, open_window, wait_for_results
from tests.conftest import TINY_MODEL, dataset_images

# watchdog's notice when a new folder is watched twice during its walk (harmless)
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")

FAST = WatchOptions(quiet=0.4, settle=0.2, poll_interval=0.3, recheck=0.3)


def live_window(qtbot, lib, folder: Path):
    """The window over ``lib``, once its watcher has caught up and watches ``folder``."""
    w = open_window(qtbot, lib, watch_options=FAST)
    qtbot.waitUntil(lambda: w.live.state(str(folder)).kind == "watching"
                    and w.live.watcher.idle, timeout=WAIT_MS)
    return w


def state_shown(dialog, row: int = 0) -> str:
    """The state Settings shows under a folder (the line after its path)."""
    return dialog.folders.item(row).text().splitlines()[1].strip()


def photos_in_grid(w) -> list[str]:
    return [w.results.hit(r).path for r in range(w.results.rowCount())]


def search_image(qtbot, w, path: Path) -> None:
    """Search with a photo of the library: it is its own best match."""
    w.search_with_image(str(path))

    def first() -> None:
        assert w.shown is not None and w.shown.image == str(path)
        assert w.results.rowCount() > 0 and w.results.hit(0).path == str(path)
    qtbot.waitUntil(first, timeout=WAIT_MS)


def test_photos_copied_in_while_open_become_searchable(qtbot, tiny_lib, photos):
    tiny_lib.add_folders([photos])
    w = live_window(qtbot, tiny_lib, photos)
    try:
        assert w.live.label.isVisible() and "Watching 1 folder" in w.live.label.text()
        new = []
        for p in dataset_images()[12:16]:
            shutil.copy2(p, photos / f"new-{p.name}")
            new.append(photos / f"new-{p.name}")
        qtbot.waitUntil(lambda: w.status.photos == 16, timeout=WAIT_MS)
        assert "16 photos" in w.statusbar.library_label.text()
        for path in new:
            search_image(qtbot, w, path)
        assert not w.banner.isVisible()
    finally:
        close_window(w)


def test_deleted_photos_leave_the_results_on_screen(qtbot, tiny_lib, photos):
    tiny_lib.add_folders([photos])
    w = live_window(qtbot, tiny_lib, photos)
    try:
        qtbot.keyClicks(w.search.field, "a dog")
        wait_for_results(qtbot, w, text="a dog")
        shown = photos_in_grid(w)
        assert len(shown) >= 3
        gone, kept = shown[:2], shown[2:]
        assert w.grid.current_hit().path == gone[0]  # selected, and in the preview
        for path in gone:
            Path(path).unlink()
        qtbot.waitUntil(lambda: photos_in_grid(w) == kept, timeout=WAIT_MS)
        # the selection moved to a photo that is there; nothing was reported as an error
        qtbot.waitUntil(lambda: w.preview.current is not None
                        and w.preview.current.path in kept, timeout=WAIT_MS)
        assert w.preview.current.image is not None and not w.banner.isVisible()
        qtbot.waitUntil(lambda: w.status.photos == 10, timeout=WAIT_MS)
    finally:
        close_window(w)


def test_the_preview_follows_a_photo_renamed_while_selected(qtbot, tiny_lib, photos):
    tiny_lib.add_folders([photos])
    tiny_lib.set_captions(tiny_lib.photo_by_path(sorted(photos.iterdir())[0]).id,
                          ["a boat on the lake"])
    w = live_window(qtbot, tiny_lib, photos)
    try:
        target = sorted(photos.iterdir())[0]
        search_image(qtbot, w, target)
        hit = w.grid.current_hit()
        qtbot.waitUntil(lambda: w.preview.current is not None
                        and w.preview.current.photo_id == hit.photo_id, timeout=WAIT_MS)
        (photos / "2024").mkdir()
        moved = photos / "2024" / "renamed.jpg"
        target.rename(moved)
        qtbot.waitUntil(lambda: w.preview.path.text() == str(moved), timeout=WAIT_MS)
        assert w.preview.name.text() == "renamed.jpg"
        assert w.preview.current.path == str(moved)
        assert w.grid.current_hit().photo_id == hit.photo_id  # the same row, still selected
        assert w.grid.current_hit().path == str(moved)
        assert w.preview.caption_lines() == ["a boat on the lake"]  # captions kept
        assert tiny_lib.photo_by_path(moved).id == hit.photo_id
    finally:
        close_window(w)


def test_a_paused_folder_waits_until_it_is_resumed(qtbot, tiny_lib, photos):
    tiny_lib.add_folders([photos])
    w = live_window(qtbot, tiny_lib, photos)
    try:
        w.open_settings()
        dialog = w._settings_dialog
        dialog.folders.setCurrentRow(0)
        assert dialog.selected_folder() == str(photos)
        assert state_shown(dialog) == "watching"
        assert dialog.pause_button.text() == "Pause"
        qtbot.mouseClick(dialog.pause_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: w.live.watcher.mode(photos) == "paused", timeout=WAIT_MS)
        assert tiny_lib.paused_folders() == [str(photos)]
        qtbot.waitUntil(lambda: state_shown(dialog).startswith("paused"), timeout=WAIT_MS)
        qtbot.waitUntil(lambda: dialog.pause_button.text() == "Resume", timeout=WAIT_MS)
        assert "paused" in w.live.label.text()

        new = photos / "while-paused.jpg"
        shutil.copy2(dataset_images()[20], new)
        qtbot.wait(int(10 * (FAST.quiet + FAST.recheck) * 1000))  # many chances to pick it up
        assert tiny_lib.photo_by_path(new) is None
        assert w.status.photos == 12

        dialog.folders.setCurrentRow(0)
        qtbot.mouseClick(dialog.pause_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: w.status.photos == 13, timeout=WAIT_MS)
        assert tiny_lib.photo_by_path(new) is not None and tiny_lib.paused_folders() == []
        qtbot.waitUntil(lambda: state_shown(dialog) == "watching", timeout=WAIT_MS)
    finally:
        close_window(w)


def test_changes_made_while_closed_are_caught_up_on_opening(qtbot, tiny_lib, photos):
    tiny_lib.add_folders([photos])
    w = live_window(qtbot, tiny_lib, photos)
    close_window(w)
    assert w.live.watcher is None and not w.live._stopping  # stopped, and its thread ended

    a, b = sorted(photos.iterdir())[:2]
    kept = tiny_lib.photo_by_path(a).id
    a.rename(photos / "renamed.jpg")
    b.unlink()
    shutil.copy2(dataset_images()[12], photos / "new.jpg")

    w = live_window(qtbot, tiny_lib, photos)
    try:
        qtbot.waitUntil(lambda: tiny_lib.photo_by_path(photos / "new.jpg") is not None
                        and w.status.photos == 12, timeout=WAIT_MS)
        assert tiny_lib.photo_by_path(photos / "renamed.jpg").id == kept
        assert tiny_lib.photo_by_path(b) is None
        search_image(qtbot, w, photos / "new.jpg")
    finally:
        close_window(w)


def test_watching_can_be_turned_off_in_settings(qtbot, tiny_lib, photos):
    tiny_lib.add_folders([photos])
    w = live_window(qtbot, tiny_lib, photos)
    try:
        w.open_settings()
        dialog = w._settings_dialog
        assert dialog.watch_box.isChecked()
        dialog.watch_box.setChecked(False)
        assert w.live.watcher is None and not w.settings.watch
        assert w.live.label.text() == "Watching is off"
        assert "not watched" in state_shown(dialog)
        shutil.copy2(dataset_images()[20], photos / "unseen.jpg")
        qtbot.wait(int(6 * FAST.quiet * 1000))
        assert tiny_lib.photo_by_path(photos / "unseen.jpg") is None

        dialog.watch_box.setChecked(True)  # a new watcher catches up at once
        qtbot.waitUntil(lambda: w.status.photos == 13, timeout=WAIT_MS)
        dialog.done(0)
        from app.settings import load_settings
        assert load_settings().watch is True
    finally:
        close_window(w)


HOLDER = """
import json, sys
from engine.library import Library
lib = Library.open(sys.argv[1], device="cpu", default_model=json.loads(sys.argv[3]))
with lib.writer.hold("watching, in another process"):
    print("held", flush=True)
    for line in sys.stdin:
        if line.strip() == "index":
            lib.add_folders([sys.argv[2]])
            print("indexed", flush=True)
        else:
            break
"""


def test_another_process_changing_the_library_is_said_once_and_followed(
        qtbot, tiny_lib, photos, monkeypatch):
    """A background `chikaku watch` holds the writer lock: the window says so once, keeps
    searching, shows the other process's new photos, and takes over when it has gone."""
    monkeypatch.setattr("app.live.GENERATION_POLL_MS", 300)
    tiny_lib.add_folders([photos])
    other = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tiny_lib.root), str(photos), json.dumps(TINY_MODEL)],
        cwd=Path(__file__).resolve().parents[2], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    w = None
    try:
        assert other.stdout.readline().strip() == "held"
        said: list[str] = []
        show = StatusBar.showMessage
        monkeypatch.setattr(StatusBar, "showMessage",
                            lambda bar, text, *a: (said.append(text), show(bar, text, *a)))
        w = open_window(qtbot, tiny_lib, watch_options=replace(FAST, retry_max=1.0))
        qtbot.waitUntil(lambda: w.live.other is not None, timeout=WAIT_MS)
        assert w.live.label.text().startswith("Read-only: another Chikaku process")
        assert "watching, in another process" in w.live.label.toolTip()
        qtbot.wait(3000)  # the watcher keeps trying meanwhile, and fails quietly
        assert len([t for t in said if "another Chikaku process" in t]) == 1
        assert not w.banner.isVisible()

        new = photos / "from-the-other-process.jpg"
        shutil.copy2(dataset_images()[12], new)
        other.stdin.write("index\n")
        other.stdin.flush()
        assert other.stdout.readline().strip() == "indexed"
        qtbot.waitUntil(lambda: w.status.photos == 13, timeout=WAIT_MS)
        search_image(qtbot, w, new)

        other.stdin.write("quit\n")
        other.stdin.flush()
        other.wait(30)
        qtbot.waitUntil(lambda: w.live.other is None, timeout=WAIT_MS)  # this window watches
        shutil.copy2(dataset_images()[13], photos / "after.jpg")
        qtbot.waitUntil(lambda: w.status.photos == 14, timeout=WAIT_MS)
        assert not w.banner.isVisible()
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
        if w is not None:
            close_window(w)


def test_a_caption_saved_during_a_pass_waits_for_it(qtbot, tiny_lib, photos, monkeypatch):
    """The watcher's pass holds the writer lock; a caption saved meanwhile is saved after it,
    with no error."""
    tiny_lib.add_folders([photos])
    w = live_window(qtbot, tiny_lib, photos)
    original = tiny_lib.add_folders
    in_pass = threading.Event()

    def slow_pass(*args, **kwargs):
        in_pass.set()
        time.sleep(2.0)  # still inside the watcher's hold of the writer lock
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_lib, "add_folders", slow_pass)
    try:
        target = sorted(photos.iterdir())[0]
        search_image(qtbot, w, target)
        qtbot.waitUntil(lambda: w.preview.current is not None
                        and w.preview.current.path == str(target), timeout=WAIT_MS)
        shutil.copy2(dataset_images()[12], photos / "new.jpg")
        qtbot.waitUntil(in_pass.is_set, timeout=WAIT_MS)
        assert tiny_lib.writer.busy
        w.preview.captions.setPlainText("the harbour at dusk")
        w.preview.save_captions()
        pid = w.preview.current.photo_id
        qtbot.waitUntil(lambda: tiny_lib.captions(pid) == ["the harbour at dusk"],
                        timeout=WAIT_MS)
        qtbot.waitUntil(lambda: w.status.photos == 13, timeout=WAIT_MS)
        assert not w.banner.isVisible()
    finally:
        close_window(w)


def test_a_folder_that_goes_away_is_shown_unavailable_and_comes_back(qtbot, tiny_lib, photos,
                                                                     tmp_path):
    tiny_lib.add_folders([photos])
    w = live_window(qtbot, tiny_lib, photos)
    progress: list[tuple[str, int, int]] = []
    w.live.states_changed.connect(
        lambda: progress.append(w.statusbar.activity("watch") or ("", 0, 0)))
    try:
        photos.rename(tmp_path / "unplugged")
        qtbot.waitUntil(lambda: w.live.state(str(photos)).kind == "unavailable",
                        timeout=WAIT_MS)
        assert "1 unavailable" in w.live.label.text()
        assert str(photos) in w.live.state(str(photos)).detail
        w.open_settings()
        assert "unavailable" in state_shown(w._settings_dialog)
        assert w.status.photos == 12  # its photos stay in the library

        for p in dataset_images()[12:20]:
            shutil.copy2(p, tmp_path / "unplugged" / p.name)
        (tmp_path / "unplugged").rename(photos)
        qtbot.waitUntil(lambda: w.status.photos == 20, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: w.live.state(str(photos)).kind == "watching", timeout=WAIT_MS)
        # the catch-up pass was shown in the status bar, with its progress
        assert any(text.startswith("Catching up") for text, _d, _t in progress)
        assert any(total == 8 for _text, _d, total in progress)
    finally:
        close_window(w)


def test_a_network_folder_is_polled_and_kept_current(qtbot, tiny_lib, photos, monkeypatch):
    from engine.watching import observers

    monkeypatch.setattr(observers, "filesystem_type", lambda _path: "fuse.sshfs")
    tiny_lib.add_folders([photos])
    w = open_window(qtbot, tiny_lib, watch_options=FAST)
    try:
        # the state says "polling" first; the watcher's reason follows in a later event
        qtbot.waitUntil(lambda: w.live.state(str(photos)).kind == "polling"
                        and bool(w.live.state(str(photos)).detail), timeout=WAIT_MS)
        state = w.live.state(str(photos))
        assert "fuse.sshfs folders send no change events" in state.detail
        assert "polling" in state.text and "1 polling" in w.live.label.text()
        shutil.copy2(dataset_images()[12], photos / "over-the-network.jpg")
        qtbot.waitUntil(lambda: w.status.photos == 13, timeout=WAIT_MS)
    finally:
        close_window(w)


def test_with_watching_off_a_folder_is_rescanned_on_request(qtbot, tiny_lib, photos):
    from app.settings import Settings

    tiny_lib.add_folders([photos])
    w = open_window(qtbot, tiny_lib, settings=Settings(watch=False), watch_options=FAST)
    try:
        assert w.live.watcher is None
        qtbot.waitUntil(lambda: w.live.label.text() == "Watching is off", timeout=WAIT_MS)
        shutil.copy2(dataset_images()[12], photos / "new.jpg")
        w.open_settings()
        dialog = w._settings_dialog
        assert not dialog.watch_box.isChecked()
        assert "not watched" in state_shown(dialog)
        qtbot.wait(int(4 * FAST.quiet * 1000))
        assert w.status.photos == 12  # nothing looks at the folder by itself
        dialog.folders.setCurrentRow(0)
        qtbot.mouseClick(dialog.rescan_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: w.status.photos == 13, timeout=WAIT_MS)
        assert w.live.watcher is None
    finally:
        close_window(w)


def test_watching_that_cannot_start_is_explained_and_the_window_works(qtbot, tiny_lib, photos,
                                                                      monkeypatch):
    from engine.watching.watcher import Watcher

    def refuse(self):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(Watcher, "start", refuse)
    tiny_lib.add_folders([photos])
    w = open_window(qtbot, tiny_lib, watch_options=FAST)
    try:
        qtbot.waitUntil(lambda: w.banner.isVisible(), timeout=WAIT_MS)
        assert "Could not watch the library's folders for changes" in w.banner.text()
        assert "Too many open files" in w.banner.text() and "Traceback" not in w.banner.text()
        assert w.live.label.text().startswith("Not watching the folders")
        assert "watching could not start" in w.live.state(str(photos)).text
        search_image(qtbot, w, sorted(photos.iterdir())[0])
    finally:
        close_window(w)


def test_a_photo_edited_in_place_gets_its_new_thumbnail_and_preview(qtbot, tiny_lib, photos):
    tiny_lib.add_folders([photos])
    w = live_window(qtbot, tiny_lib, photos)
    try:
        target = sorted(photos.iterdir())[0]
        search_image(qtbot, w, target)
        row = w.results.row_of(w.grid.current_hit().photo_id)
        qtbot.waitUntil(lambda: w.results.loader.icon(str(target)) is not None
                        and w.preview.current is not None
                        and w.preview.current.image is not None, timeout=WAIT_MS)
        before = w.results.data(w.results.index(row), Qt.ItemDataRole.DecorationRole).cacheKey()
        shown = w.preview.current.image.copy()
        shutil.copyfile(dataset_images()[30], target)  # another picture under the same name
        qtbot.waitUntil(lambda: w.results.data(
            w.results.index(row), Qt.ItemDataRole.DecorationRole).cacheKey() != before,
            timeout=WAIT_MS)
        assert w.results.hit(row).path == str(target)  # the same photo, still in its place
        qtbot.waitUntil(lambda: w.preview.current is not None
                        and w.preview.current.image is not None
                        and w.preview.current.image != shown, timeout=WAIT_MS)  # new picture
    finally:
        close_window(w)


def test_switching_libraries_stops_the_old_watcher(qtbot, tiny_lib, photos, tmp_path):
    from engine.library import Library

    tiny_lib.add_folders([photos])
    other_photos = tmp_path / "other-photos"
    other_photos.mkdir()
    for p in dataset_images()[40:44]:
        shutil.copy2(p, other_photos / p.name)
    other = Library.open(tmp_path / "other-library", device="cpu", default_model=TINY_MODEL)
    other.add_folders([other_photos])
    w = live_window(qtbot, tiny_lib, photos)
    try:
        first = w.live.watcher
        w._library_ready(other)  # as when another library has been opened
        qtbot.waitUntil(lambda: not first.running, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: w.live.state(str(other_photos)).kind == "watching"
                        and w.status.photos == 4, timeout=WAIT_MS)
        shutil.copy2(dataset_images()[50], photos / "into-the-first.jpg")
        shutil.copy2(dataset_images()[51], other_photos / "into-the-second.jpg")
        qtbot.waitUntil(lambda: w.status.photos == 5, timeout=WAIT_MS)
        assert other.photo_by_path(other_photos / "into-the-second.jpg") is not None
        assert tiny_lib.photo_by_path(photos / "into-the-first.jpg") is None
    finally:
        close_window(w)
        other.close()
