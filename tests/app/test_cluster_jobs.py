"""A cluster job in the status bar: a person who started ``chikaku index --cluster`` (or
``chikaku cluster plan`` and ``submit``) sees in the open window how far the job has come, then
that its photos await ingest, then that they were ingested.

The job folder is written with the engine's own code (the plan, and shards as the cluster job
writes them), so no Ray is needed; its cluster cannot be asked (an address where nothing
answers), so the folder alone tells the window how far the job is.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pyarrow")

from app.clusterjobs import POLL_MS  # noqa: E402
from engine.cluster.coordinator import ingest, plan  # noqa: E402
from tests.app.conftest import WAIT_MS, close_window, open_window  # noqa: E402
from tests.engine.test_cluster_status import (  # noqa: E402
    new_photos,
    refusing_address,
    submitted,
    write_rows,
)


def line(w) -> str:
    label = w.cluster.label
    return label.text() if label.isVisible() else ""


def test_the_status_bar_follows_a_cluster_job_until_it_is_ingested(qtbot, tiny_lib, photos,
                                                                     tmp_path):
    tiny_lib.add_folders([photos])
    job_dir = tmp_path / "job"
    plan(tiny_lib, [new_photos(tmp_path / "more")], job_dir)  # 4 photos for the cluster
    submitted(job_dir, refusing_address())
    write_rows(tiny_lib, job_dir, [0, 1])  # half of them done
    w = open_window(qtbot, tiny_lib)
    said: list[str] = []
    w.statusbar.messageChanged.connect(said.append)
    try:
        qtbot.waitUntil(lambda: line(w) == "Cluster job running: 2 of 4 photos embedded",
                        timeout=WAIT_MS)
        assert str(job_dir) in w.cluster.label.toolTip()

        write_rows(tiny_lib, job_dir, [2, 3])  # the rest: the job has finished
        qtbot.waitUntil(lambda: line(w) == "Cluster job finished: 4 photos await ingest",
                        timeout=WAIT_MS + POLL_MS)
        assert "chikaku cluster ingest --job-dir" in w.cluster.label.toolTip()

        ingest(tiny_lib, job_dir)
        qtbot.waitUntil(lambda: any("4 photos ingested" in m for m in said),
                        timeout=WAIT_MS + POLL_MS)
        assert line(w) == ""
        qtbot.waitUntil(lambda: w.status.photos == 16, timeout=WAIT_MS)
    finally:
        close_window(w)


def test_no_line_without_a_cluster_job(qtbot, tiny_window):
    qtbot.waitUntil(lambda: not tiny_window.cluster._polling, timeout=WAIT_MS)
    assert tiny_window.cluster.jobs == [] and line(tiny_window) == ""
