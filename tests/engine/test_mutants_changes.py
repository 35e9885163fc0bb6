"""Debouncing on a clock moved by hand: when a batch is due, what a delay or a file still
being written does to it, and when a waiting watcher is woken.

Written against the mutants tests/bench/mutation.py found surviving in engine/changes.py; the
real-time watcher test in test_debounce.py covers the same rules end to end."""

from __future__ import annotations

import os

import pytest

import engine.watching.changes as changes
from engine.watching.changes import ChangeBatch, growing_files
from tests.engine.test_debounce import Clock


class Cond:
    """Stands in for the batch's threading.Condition: records waits and wake-ups."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.wakes = 0

    def __enter__(self) -> Cond:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def wait(self, timeout: float) -> None:
        self.waits.append(round(timeout, 6))

    def notify_all(self) -> None:
        self.wakes += 1


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(changes, "time", c)
    return c


def _write(path, data: bytes, mtime: float) -> tuple[int, int]:
    path.write_bytes(data)
    os.utime(path, ns=(int(mtime * 1e9), int(mtime * 1e9)))
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def test_a_file_is_growing_only_if_it_changed_since_the_last_look_and_recently(tmp_path, clock):
    now = clock.now
    fresh = _write(tmp_path / "fresh.jpg", b"abc", now - 0.5)
    same = _write(tmp_path / "same.jpg", b"abc", now - 0.5)
    _write(tmp_path / "old.jpg", b"abc", now - 1.5)
    _write(tmp_path / "edge.jpg", b"abc", now - 1.0)  # written exactly `quiet` ago
    names = ("gone.jpg", "fresh.jpg", "same.jpg", "old.jpg", "edge.jpg")  # gone: deleted again
    seen = {str(tmp_path / n): (same if n == "same.jpg" else None) for n in names}
    assert growing_files(seen, quiet=1.0) == {str(tmp_path / "fresh.jpg"): fresh}


def test_a_batch_is_due_exactly_a_quiet_period_after_the_last_change(clock):
    batch = ChangeBatch(quiet=1.0, settle=0.5)
    assert batch.take() is None and not batch.pending()
    batch.note(["/b"])
    clock.now += 0.5
    batch.note(["/a", "/b"])
    assert batch.pending()
    clock.now += 0.999
    assert batch.take() is None
    clock.now += 0.001
    assert batch.take() == ["/a", "/b"]
    assert not batch.pending() and batch.take() is None


def test_a_delay_holds_the_batch_and_a_later_change_never_shortens_it(clock):
    batch = ChangeBatch(quiet=1.0, settle=0.5)
    batch.note(["/a"], delay=3.0)
    clock.now += 1.0
    batch.note(["/a"], delay=0.5)  # due at +3.0 still, not at +2.0 from the quiet period
    clock.now += 1.9
    assert batch.take() is None
    clock.now += 0.1
    assert batch.take() == ["/a"]


def test_a_file_still_growing_holds_the_batch_for_the_settle_time(tmp_path, clock):
    batch = ChangeBatch(quiet=1.0, settle=0.5)
    photo = tmp_path / "copy.jpg"
    batch.note([str(tmp_path)], path=str(photo))
    _write(photo, b"half", clock.now + 0.5)  # still being written after the event
    clock.now += 1.0
    assert batch.take() is None  # written within the quiet period, and never looked at before
    clock.now += 0.499
    assert batch.take() is None  # settling
    clock.now += 0.001
    assert batch.take() == [str(tmp_path)]  # the same size and time as at the last look
    assert batch.take() is None


def test_a_file_that_grew_again_holds_the_batch_again(tmp_path, clock):
    batch = ChangeBatch(quiet=1.0, settle=0.5)
    photo = tmp_path / "copy.jpg"
    batch.note([str(tmp_path)], path=str(photo))
    _write(photo, b"half", clock.now + 0.5)  # still being written after the event
    clock.now += 1.0
    assert batch.take() is None
    clock.now += 0.5
    _write(photo, b"half and more", clock.now)
    assert batch.take() is None
    clock.now += 0.5
    assert batch.take() == [str(tmp_path)]


def test_a_change_while_files_are_looked_at_makes_the_batch_wait(monkeypatch, clock):
    batch = ChangeBatch(quiet=1.0, settle=0.5)
    batch.note(["/a"])
    clock.now += 1.0

    def look(files, quiet):
        batch.note(["/b"])  # a change arrives while the files are being looked at
        return {}

    monkeypatch.setattr(changes, "growing_files", look)
    assert batch.take() is None
    monkeypatch.undo()
    monkeypatch.setattr(changes, "time", clock)
    clock.now += 1.0
    assert batch.take() == ["/a", "/b"]


def test_a_waiting_watcher_sleeps_until_the_batch_is_due(clock):
    batch = ChangeBatch(quiet=1.0, settle=0.5)
    cond = batch._cond = Cond()
    batch.wait(5.0)  # nothing pending: the whole limit
    batch.note(["/a"])
    clock.now += 0.25
    batch.wait(5.0)  # due in 0.75 s
    batch.wait(0.5)  # the limit comes first
    clock.now += 0.75
    batch.wait(5.0)  # due now: no sleep at all
    assert cond.waits == [5.0, 0.75, 0.5]


def test_a_waiting_watcher_is_woken_by_a_new_batch_a_delay_or_wake(clock):
    batch = ChangeBatch(quiet=1.0, settle=0.5)
    cond = batch._cond = Cond()
    batch.note(["/a"])
    assert cond.wakes == 1  # a new batch starts
    batch.note(["/a"], path="/a/x.jpg")
    assert cond.wakes == 1  # only moves the due time back
    batch.note(["/a"], delay=2.0)
    assert cond.wakes == 2  # a delay may move it further than the sleeper expects
    batch.wake()
    assert cond.wakes == 3


def test_every_folder_of_a_growing_file_waits_for_it(tmp_path, clock):
    batch = ChangeBatch(quiet=1.0, settle=0.5)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    copy_a, copy_b = a / "one.jpg", b / "two.jpg"
    batch.note([str(a)], path=str(copy_a))
    batch.note([str(b)], path=str(copy_b))
    _write(copy_a, b"half", clock.now + 0.5)
    _write(copy_b, b"half", clock.now + 0.5)
    clock.now += 1.0
    assert batch.take() is None  # two copies going on, one in each folder: both wait
    clock.now += 0.5
    assert batch.take() == [str(a), str(b)]


def test_a_file_moved_between_folders_holds_both_even_when_noted_again(tmp_path, clock):
    batch = ChangeBatch(quiet=1.0, settle=0.5)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    moved = tmp_path / "moved.jpg"
    batch.note([a, b], path=str(moved))  # moved from a to b
    batch.note([b], path=str(moved))  # and written to again in b
    _write(moved, b"half", clock.now + 0.5)
    clock.now += 1.0
    assert batch.take() is None
    clock.now += 0.5
    assert batch.take() == [a, b]


def test_a_file_noted_for_a_folder_still_waiting_is_looked_at_again_for_it(tmp_path, clock):
    batch = ChangeBatch(quiet=1.0, settle=0.5)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    done = tmp_path / "done.jpg"
    _write(done, b"complete", clock.now - 5)
    batch.note([a, b], path=str(done))
    batch.note([b], delay=2.0)  # b is held (a retry)
    clock.now += 1.0
    assert batch.take() == [a]
    clock.now += 1.0
    assert batch.take() == [b]
    assert not batch.pending()
