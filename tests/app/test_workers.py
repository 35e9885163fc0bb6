"""Progress from a background job: thinned so a fast job cannot flood the window, yet the last
word of each kind always arrives (the last step of a fine-tune, "stopped early")."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from app.workers import Jobs
from engine.progress import Progress
from tests.app.conftest import WAIT_MS


def test_the_last_step_and_a_stop_message_arrive_however_fast_the_steps_come(qtbot):
    holder = QWidget()  # the jobs live as long as the test's widgets
    qtbot.addWidget(holder)
    jobs = Jobs(holder)
    got: list[Progress] = []
    ended: list[object] = []

    def fast_job(progress) -> str:
        for step in range(1, 401):  # far faster than the thinning interval
            progress(Progress("training", "step", step, 1000))
        progress(Progress("training", "step", 400, 1000, message="stopped early at step 400"))
        for photo in range(1, 301):
            progress(Progress("activating", "indexing", photo, 300))
        return "done"

    jobs.submit(fast_job, pass_progress=True, progress=got.append, done=ended.append)
    qtbot.waitUntil(lambda: ended == ["done"] and not jobs.running(), timeout=WAIT_MS)
    assert jobs.wait(WAIT_MS)
    steps = [e for e in got if e.kind == "step"]
    photos = [e for e in got if e.kind == "indexing"]
    assert len(steps) < 100 and len(photos) < 100  # thinned
    assert steps[-1].message == "stopped early at step 400"  # the stop is told
    assert photos[-1].done == 300  # and the bar reaches the end
    assert got.index(steps[-1]) < got.index(photos[0])  # in the order they happened
    assert [e.done for e in steps] == sorted(e.done for e in steps)
