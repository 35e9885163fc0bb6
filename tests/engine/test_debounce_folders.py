"""One slow or growing file in one folder never delays the others: each watched folder is
debounced on its own, and a file still being written holds only its own folder.

The first two tests run the batch on a clock moved by hand; the last writes a real file slowly
under a real (polling) watcher and waits on what the library holds, never on a duration.
"""

from __future__ import annotations

import os
import time

import pytest
from PIL import Image

import engine.watching.changes as changes
from engine.progress import Progress
from engine.watching.changes import ChangeBatch
from engine.watching.watcher import Watcher, WatchOptions
from tests.engine.test_debounce import Clock, _noisy_jpeg, wait_until_whole
from tests.engine.test_watcher import wait_for

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


def test_a_file_still_growing_in_one_folder_never_delays_the_others(tmp_path, monkeypatch):
    """A copy still going on in one watched folder holds that folder only: a photo that arrived
    in another folder is indexed a quiet period after its own last change, while the growing
    file's folder waits until the file stops growing."""
    clock = Clock()
    monkeypatch.setattr(changes, "time", clock)
    batch = ChangeBatch(quiet=1.0, settle=0.5)
    camera, phone = tmp_path / "camera", tmp_path / "phone"
    camera.mkdir()
    phone.mkdir()
    start = clock.now
    growing = camera / "long-copy.jpg"
    done = phone / "IMG_0001.jpg"
    done.write_bytes(b"finished photo")
    old = int((start - 5) * 1e9)
    os.utime(done, ns=(old, old))
    batch.note([str(phone)], str(done))
    passes = []
    for step in range(500):  # the watcher looks every 10 ms, for 5 s
        clock.now = start + 0.01 * step
        if step < 400 and step % 10 == 0:  # the copy grows every 100 ms for 4 s
            with open(growing, "ab") as f:
                f.write(b"x" * 1000)
            now_ns = int(clock.now * 1e9)
            os.utime(growing, ns=(now_ns, now_ns))
            batch.note([str(camera)], str(growing))  # each write is an event
        roots = batch.take()
        if roots is not None:
            passes.append((round(clock.now - start, 2), roots))
    # the phone's photo a quiet second after it came; the camera's copy once it is complete
    # (last write at 3.9 s, a quiet second later)
    assert passes == [(1.0, [str(phone)]), (4.9, [str(camera)])]
    assert not batch.pending()


def test_a_file_growing_between_polls_holds_only_its_own_folder(tmp_path, monkeypatch):
    """Polled folders report a change only at each poll, so the quiet period passes while the
    copy goes on; the growing-file check then holds the copy's folder, not the other one."""
    clock = Clock()
    monkeypatch.setattr(changes, "time", clock)
    batch = ChangeBatch(quiet=1.0, settle=0.5)
    share, local = tmp_path / "share", tmp_path / "local"
    share.mkdir()
    local.mkdir()
    growing, done = share / "copy.jpg", local / "photo.jpg"
    done.write_bytes(b"finished photo")
    old = int((clock.now - 5) * 1e9)
    os.utime(done, ns=(old, old))
    growing.write_bytes(b"half")
    ahead = int((clock.now + 2) * 1e9)  # still being written after the event
    os.utime(growing, ns=(ahead, ahead))
    batch.note([str(share)], str(growing))
    batch.note([str(local)], str(done))
    clock.now += 1.0
    assert batch.take() == [str(local)]  # the finished photo's folder does not wait
    assert batch.pending() and batch.take() is None  # the share waits for its copy
    with open(growing, "ab") as f:
        f.write(b" and the rest")
    os.utime(growing, ns=(ahead, ahead))
    clock.now += 0.5
    assert batch.take() is None  # it grew since the last look
    clock.now += 0.5
    assert batch.take() == [str(share)]  # unchanged since the last look: complete
    assert not batch.pending()


def test_a_copy_still_going_on_in_one_folder_does_not_hold_another(tiny_lib, tmp_path):
    """Two polled folders: a photo dropped into one is indexed while a copy into the other is
    still being written; the copy is indexed once, when it is complete."""
    share, local = tmp_path / "share", tmp_path / "local"
    share.mkdir()
    local.mkdir()
    data = _noisy_jpeg()
    events: list[Progress] = []
    options = WatchOptions(quiet=0.3, settle=0.5, polling=True, poll_interval=1.0, recheck=0.3)
    with Watcher(tiny_lib, [share, local], on_event=events.append, options=options) as w:
        wait_for(lambda: w.idle and any(e.kind == "indexed" for e in events), "the first pass")
        before = len(events)
        target, dropped = share / "copy.jpg", local / "dropped.jpg"
        step = len(data) // 1000 + 1
        with open(target, "wb") as f:
            f.write(data[:step])
            f.flush()
            Image.new("RGB", (64, 48), (200, 30, 30)).save(dropped, "JPEG")
            written = step
            # the copy goes on, a piece every 0.05 s, until the dropped photo is in the library
            while tiny_lib.photo_by_path(dropped) is None and written < len(data) - step:
                f.write(data[written : written + step])
                f.flush()
                written += step
                time.sleep(0.05)
            assert tiny_lib.photo_by_path(dropped) is not None  # found while the copy went on
            assert tiny_lib.photo_by_path(target) is None  # and the half copy was left alone
            f.write(data[written:])

        wait_until_whole(tiny_lib, w, target, len(data))
        passes = [e.result for e in events[before:] if e.kind == "indexed"]
    assert all(str(target) not in r.skipped for r in passes)  # never seen half-written
    assert sum(r.embedded for r in passes) == 2  # each photo embedded once
    assert tiny_lib.photo_by_path(target).status == "ok"
