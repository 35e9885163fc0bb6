"""The library's cluster jobs in the status bar: one line saying how far a job started with
``chikaku index --cluster`` (or ``chikaku cluster plan`` and ``submit``) has come.

The engine records each job folder in the catalog when the job is planned and reads where a job
stands from its folder and its cluster (engine.cluster.status.library_jobs); this object asks it
off the UI thread, every few seconds while a job is not yet ingested and now and then otherwise
(a job planned from a terminal while the window is open), and shows the latest job that is not
ingested: photos embedded of those planned, then that they await ingest. When a job it showed
is ingested, that is said once and the library's counts follow.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QLabel

from engine.cluster.status import ENDED_EARLY, FINISHED, PLANNED, ClusterJob, library_jobs

log = logging.getLogger(__name__)

POLL_MS = 3000  # while a job is not ingested yet
IDLE_POLL_MS = 30_000  # otherwise: a job planned meanwhile is noticed within this


def job_line(job: ClusterJob) -> str:
    """The status bar's words for one job."""
    if job.state == PLANNED:
        return f"Cluster job planned: {job.planned:,} photos to embed, not submitted yet"
    if job.state == FINISHED:
        return f"Cluster job finished: {job.planned:,} photos await ingest"
    done = f"{job.finished:,} of {job.planned:,} photos"
    if job.state == ENDED_EARLY:
        return f"Cluster job {job.cluster.lower()} at {done}: submit it again to finish"
    return f"Cluster job running: {done} embedded"


def job_tip(job: ClusterJob) -> str:
    """The tooltip's words for one job: its folder, and what to do next."""
    nxt = {PLANNED: "chikaku cluster submit --cluster URL --job-dir",
           FINISHED: "chikaku cluster ingest --job-dir",
           ENDED_EARLY: "chikaku cluster submit --cluster URL --job-dir"}.get(job.state)
    said = f" (the cluster says {job.cluster})" if job.cluster else ""
    return (f"{job_line(job)}{said}\nJob folder: {job.job_dir}"
            + (f"\nNext: {nxt} {job.job_dir}" if nxt else ""))


class ClusterJobs(QObject):
    """Polls the open library's cluster jobs and shows the latest active one in the status
    bar. Handed the operations (every library call) and the status bar."""

    ingested = Signal()  # a job shown here was taken into the library

    def __init__(self, ops, statusbar, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ops, self.statusbar = ops, statusbar
        self.library = None
        self.jobs: list[ClusterJob] = []
        self._shown: dict[str, ClusterJob] = {}  # job id -> as last seen, while active
        self._polling = False
        self.label = QLabel(statusbar)
        statusbar.addPermanentWidget(self.label)
        self.label.hide()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.poll)

    def start(self, library) -> None:
        """Follow ``library``'s cluster jobs (a library opened, or switched to)."""
        self.library = library
        self.jobs, self._shown = [], {}
        self._show()
        self._timer.start(IDLE_POLL_MS)
        self.poll()

    def stop(self) -> None:
        self._timer.stop()
        self.library = None

    def poll(self) -> None:
        if self.library is None or self._polling:
            return
        self._polling = self.ops.call(library_jobs, name="check cluster jobs",
                                      log_failures=False, done=self._polled,
                                      failed=self._failed) is not None

    def _failed(self, exc: BaseException) -> None:
        self._polling = False
        log.debug("cannot read the library's cluster jobs: %s", exc)

    def _polled(self, jobs: list[ClusterJob]) -> None:
        self._polling = False
        if self.library is None:
            return
        self.jobs = list(jobs)
        now = {j.job: j for j in jobs}
        taken = [j for jid, j in self._shown.items() if jid in now and not now[jid].active]
        self._shown = {j.job: j for j in jobs if j.active}
        for job in taken:
            self.statusbar.showMessage(f"Cluster job done: {now[job.job].finished:,} photos "
                                       "ingested into the library.", 15000)
        if taken:
            self.ingested.emit()
        self._timer.setInterval(POLL_MS if self._shown else IDLE_POLL_MS)
        self._show()

    def summary(self) -> str:
        """The status bar's one line ("" when no job waits)."""
        active = [j for j in self.jobs if j.active]
        if not active:
            return ""
        more = len(active) - 1
        return job_line(active[0]) + (f" (and {more} more)" if more else "")

    def _show(self) -> None:
        text = self.summary()
        self.label.setText(text)
        self.label.setVisible(bool(text))
        self.label.setToolTip("\n\n".join(job_tip(j) for j in self.jobs if j.active))
