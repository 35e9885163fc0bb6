"""Where a library's cluster jobs stand (engine.cluster.status): planning records the job folder
in the catalog, and the job's folder and its cluster say how far it has come, from planned to
ingested. No Ray: the shards are written the way the job writes them (engine.cluster.jobdir).
"""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from engine.cluster import status as st  # noqa: E402
from engine.cluster.coordinator import ingest, plan  # noqa: E402
from engine.cluster.jobdir import (  # noqa: E402
    SUBMISSION,
    pyarrow,
    read_manifest,
    read_plan,
    write_shard,
)
from engine.imageio import content_hash, decode, read_file  # noqa: E402
from tests.conftest import dataset_images  # noqa: E402


def new_photos(folder: Path, n: int = 4) -> Path:
    """``n`` photos of the shared data set that the ``photos`` fixture's folder does not hold."""
    folder.mkdir(parents=True)
    for p in dataset_images()[12 : 12 + n]:
        shutil.copy2(p, folder / p.name)
    return folder


def write_rows(lib, job_dir: Path, rows: list[int]) -> None:
    """The manifest's ``rows`` embedded and written as one shard, as the cluster job writes it
    (the same columns, the job folder's own shard writer), with the library's model."""
    pa, _pq = pyarrow()
    made = read_plan(job_dir)
    wanted = [r for r in read_manifest(job_dir).to_pylist() if r["row"] in set(rows)]
    model = lib.model
    data = [read_file(Path(r["path"])) for r in wanted]
    images = [decode(d, size=made.input_size, max_pixels=made.max_pixels) for d in data]
    vectors = model.encode_images(np.stack([im.pixels for im in images])).astype(np.float32)
    n = len(wanted)
    write_shard(job_dir, pa.table({
        "row": pa.array([r["row"] for r in wanted], pa.int64()),
        "path": pa.array([r["path"] for r in wanted], pa.string()),
        "size": pa.array([r["size"] for r in wanted], pa.int64()),
        "mtime_ns": pa.array([r["mtime_ns"] for r in wanted], pa.int64()),
        "content_hash": pa.array([content_hash(d) for d in data], pa.string()),
        "width": pa.array([im.width for im in images], pa.int64()),
        "height": pa.array([im.height for im in images], pa.int64()),
        "taken_at": pa.array([im.taken_at.isoformat() if im.taken_at else None
                              for im in images], pa.string()),
        "reason": pa.array([None] * n, pa.string()),
        "model_version": pa.array([made.version] * n, pa.string()),
        "vector": pa.array([v.tobytes() for v in vectors], pa.binary()),
    }))


def submitted(job_dir: Path, address: str) -> None:
    """The record ``chikaku cluster submit`` leaves in the job folder (engine.cluster.submit)."""
    job = read_plan(job_dir).job
    (job_dir / SUBMISSION).write_text(json.dumps(
        {"job": job, "attempt": 1, "submission": f"chikaku-{job}-1", "address": address}))


def refusing_address() -> str:
    """A Jobs API address where nothing answers (a local:N Ray gone with its command)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def jobs_api():
    """A stand-in for a cluster's Jobs API status endpoint (GET /api/jobs/<submission id>, as
    Ray documents it), answering what ``said["status"]`` holds."""
    said = {"status": "RUNNING", "asked": []}

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            said["asked"].append(self.path)
            body = json.dumps({"status": said["status"], "message": ""}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    said["address"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield said
    server.shutdown()
    server.server_close()


def test_a_job_is_followed_from_planned_to_ingested(tiny_lib, tmp_path):
    more = new_photos(tmp_path / "more")
    job_dir = tmp_path / "job"
    made = plan(tiny_lib, [more], job_dir)
    assert made.total == 4
    assert st.job_dirs(tiny_lib.catalog) == [str(job_dir.resolve())]  # recorded by the plan

    (job,) = st.library_jobs(tiny_lib)
    assert (job.state, job.finished, job.planned, job.active) == (st.PLANNED, 0, 4, True)

    submitted(job_dir, refusing_address())
    write_rows(tiny_lib, job_dir, [0, 1])
    (job,) = st.library_jobs(tiny_lib)  # the cluster cannot be asked: running, as far as known
    assert (job.state, job.finished, job.cluster) == (st.RUNNING, 2, None)

    write_rows(tiny_lib, job_dir, [2, 3])
    (job,) = st.library_jobs(tiny_lib)
    assert (job.state, job.finished) == (st.FINISHED, 4)

    ingest(tiny_lib, job_dir)
    (job,) = st.library_jobs(tiny_lib)
    assert (job.state, job.active) == (st.INGESTED_STATE, False)
    assert tiny_lib.status().photos == 4


def test_the_cluster_says_whether_a_job_still_runs(tiny_lib, tmp_path, jobs_api):
    job_dir = tmp_path / "job"
    plan(tiny_lib, [new_photos(tmp_path / "more")], job_dir)
    submitted(job_dir, jobs_api["address"])
    write_rows(tiny_lib, job_dir, [0])
    job = st.job_status(job_dir)
    assert (job.state, job.cluster, job.finished) == (st.RUNNING, "RUNNING", 1)
    assert jobs_api["asked"] == [f"/api/jobs/chikaku-{job.job}-1"]
    jobs_api["status"] = "FAILED"
    job = st.job_status(job_dir)
    assert (job.state, job.cluster, job.active) == (st.ENDED_EARLY, "FAILED", True)
    write_rows(tiny_lib, job_dir, [1, 2, 3])  # submitted again and finished: not asked again
    asked = len(jobs_api["asked"])
    assert st.job_status(job_dir).state == st.FINISHED and len(jobs_api["asked"]) == asked


def test_the_latest_jobs_are_kept_and_gone_folders_left_out(tiny_lib, tmp_path):
    more = new_photos(tmp_path / "more")
    for i in range(st.KEPT + 2):
        plan(tiny_lib, [more], tmp_path / f"job{i}")
    kept = st.job_dirs(tiny_lib.catalog)
    assert kept == [str((tmp_path / f"job{i}").resolve())
                    for i in range(st.KEPT + 1, 1, -1)]
    plan(tiny_lib, [more], tmp_path / "job5")  # planned again: the latest once more
    assert st.job_dirs(tiny_lib.catalog)[0] == str((tmp_path / "job5").resolve())
    shutil.rmtree(tmp_path / "job5")
    shown = [j.job_dir for j in st.library_jobs(tiny_lib, ask=False)]
    assert str(tmp_path / "job5") not in shown and len(shown) == st.KEPT - 1
    tiny_lib.catalog.put_meta(st.JOBS_KEY, "not json")  # damaged: no jobs, no failure
    assert st.library_jobs(tiny_lib) == []
