"""Debouncing: a burst of changes, however long, is one pass, and a file still being written
holds its batch until it is complete.

The first test runs the batch on a clock it moves by hand, so nothing depends on how fast this
machine is; the second writes a real file slowly under a real (polling) watcher.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

import engine.watching.changes as changes
from engine.progress import Progress
from engine.watching.changes import ChangeBatch
from engine.watching.watcher import Watcher, WatchOptions
from tests.engine.test_watcher import wait_for

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


class Clock:
    """Stands in for the ``time`` module inside engine.watching.changes."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time_ns(self) -> int:
        return int(self.now * 1e9)


def test_a_slow_deletion_of_100_photos_is_one_pass(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(changes, "time", clock)
    batch = ChangeBatch(quiet=1.0, settle=0.5)
    start = clock.now
    deletions = [start + 0.02 * i for i in range(100)]  # one every 20 ms, for 2 s
    passes = []
    for step in range(500):  # the watcher looks every 10 ms, for 5 s
        clock.now = start + 0.01 * step
        while deletions and deletions[0] <= clock.now:
            deletions.pop(0)
            batch.note(["/photos"])  # a deleted photo: its folder changed, no file written
        roots = batch.take()
        if roots is not None:
            passes.append((round(clock.now - start, 2), roots))
    # one pass, a quiet second after the last deletion (at 1.98 s), not one a second after the
    # first and more for the rest
    assert passes == [(2.98, ["/photos"])]
    assert not batch.pending()


def _noisy_jpeg() -> bytes:
    """About 1.5 MB: big enough to be written in many pieces."""
    pixels = np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def wait_until_whole(lib, watcher, target, size: int) -> None:
    """Until the watcher is idle with the copied photo in the library at its full size."""
    def indexed() -> bool:
        photo = lib.photo_by_path(target)
        return watcher.idle and photo is not None and photo.size == size

    wait_for(indexed, "the copied photo to be indexed")


def test_a_file_still_being_written_holds_the_batch_until_it_is_complete(tiny_lib, tmp_path):
    """Polled folders (network shares) report a change only at each poll; between polls the
    quiet period passes while the copy goes on. Only the growing-file check keeps the pass from
    indexing half a photo (and then indexing it again)."""
    folder = tmp_path / "share"
    folder.mkdir()
    data = _noisy_jpeg()
    events: list[Progress] = []
    options = WatchOptions(quiet=0.3, settle=0.5, polling=True, poll_interval=1.0, recheck=0.3)
    with Watcher(tiny_lib, [folder], on_event=events.append, options=options) as w:
        wait_for(lambda: w.idle and any(e.kind == "indexed" for e in events), "the first pass")
        before = sum(e.kind == "indexed" for e in events)
        target = folder / "copy.jpg"
        step = len(data) // 30 + 1
        with open(target, "wb") as f:  # 30 pieces, 0.1 s apart: 3 s, three polls or more
            for i in range(0, len(data), step):
                f.write(data[i : i + step])
                f.flush()
                time.sleep(0.1)

        wait_until_whole(tiny_lib, w, target, len(data))
        passes = [e.result for e in events[before:] if e.kind == "indexed"]
    assert all(str(target) not in r.skipped for r in passes)  # never seen half-written
    assert sum(r.added + r.updated for r in passes) == 1 and sum(r.embedded for r in passes) == 1
    assert tiny_lib.photo_by_path(target).status == "ok"
