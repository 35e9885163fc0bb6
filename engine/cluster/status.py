"""Where a library's cluster jobs stand: for the app's status bar, and anyone else who asks.

``plan`` records each job folder in the catalog (``cluster_jobs`` in its meta table, the latest
first), so that whoever opens the library finds its jobs, wherever their folders are. A job's
state is read from its folder: the plan (how many photos), the finished shards (their names say
how many rows each holds, so nothing is opened), the submission last made and the mark ``ingest``
leaves. While photos are missing and the job was submitted, the cluster's Jobs API is asked how
the job is doing (its documented REST endpoint ``GET /api/jobs/<submission id>``, with a short
timeout), so that a job that failed or was stopped is not shown as running; an unreachable
cluster (a ``local:N`` Ray gone with its command) leaves that unknown.

Nothing here needs Ray or pyarrow: the desktop app reads it as it is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import ClusterError
from .jobdir import INGESTED, SUBMISSION, read_plan, shards

if TYPE_CHECKING:
    from ..catalog import Catalog

log = logging.getLogger(__name__)

JOBS_KEY = "cluster_jobs"  # catalog meta: the library's job folders, a JSON list, latest first
KEPT = 8  # job folders remembered
ASK_TIMEOUT_S = 2.0  # how long the cluster's Jobs API is waited for
ENDED = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})  # the Jobs API's terminal states

# What a job is doing, as ClusterJob.state says it:
PLANNED = "planned"  # written, not submitted yet
RUNNING = "running"  # submitted; the cluster says it runs, or cannot be asked
ENDED_EARLY = "ended"  # the cluster says it ended before every photo was embedded
FINISHED = "finished"  # every planned photo is in a shard: they await ingest
INGESTED_STATE = "ingested"  # taken into the library


@dataclass(frozen=True)
class ClusterJob:
    """One cluster job of the library, as its folder (and the cluster) describe it."""

    job_dir: str
    job: str  # the plan's id
    planned: int  # photos the plan has to embed
    finished: int  # of them, in finished shards
    state: str  # PLANNED, RUNNING, ENDED_EARLY, FINISHED or INGESTED_STATE
    cluster: str | None = None  # the cluster's word for it (RUNNING, FAILED …); None: not asked

    @property
    def active(self) -> bool:
        """Not ingested yet: running, waiting to run or waiting to be ingested."""
        return self.state != INGESTED_STATE


def remember(catalog: Catalog, job_dir: Path | str) -> None:
    """Record a job folder as the library's latest (``plan`` does; under the writer lock)."""
    folder = str(Path(job_dir).resolve())
    kept = [folder] + [f for f in job_dirs(catalog) if f != folder]
    catalog.put_meta(JOBS_KEY, json.dumps(kept[:KEPT]))


def job_dirs(catalog: Catalog) -> list[str]:
    """The library's recorded job folders, latest first."""
    stored = catalog.get_meta(JOBS_KEY)
    try:
        found = json.loads(stored) if stored else []
    except ValueError:
        log.warning("the catalog's list of cluster job folders is damaged: ignored")
        return []
    return [f for f in found if isinstance(f, str)] if isinstance(found, list) else []


def job_status(job_dir: Path | str, ask: bool = True) -> ClusterJob | None:
    """Where the job in ``job_dir`` stands; None when the folder holds no job (moved, removed,
    or planned again elsewhere). ``ask``: ask the cluster while photos are missing."""
    folder = Path(job_dir)
    try:
        plan = read_plan(folder)
    except ClusterError:
        return None
    done = min(plan.total, sum(s.rows for s in shards(folder)))
    base = {"job_dir": str(folder), "job": plan.job, "planned": plan.total, "finished": done}
    if _ingested(folder, plan.job):
        return ClusterJob(**base, state=INGESTED_STATE)
    if done >= plan.total:
        return ClusterJob(**base, state=FINISHED)
    submitted = _submission(folder)
    if submitted.get("job") != plan.job or not submitted.get("submission"):
        return ClusterJob(**base, state=PLANNED)
    said = _ask(submitted.get("address"), submitted["submission"]) if ask else None
    return ClusterJob(**base, state=ENDED_EARLY if said in ENDED else RUNNING, cluster=said)


def library_jobs(library, ask: bool = True) -> list[ClusterJob]:
    """The library's cluster jobs that still have their folder, latest first."""
    found = (job_status(f, ask) for f in job_dirs(library.catalog))
    return [j for j in found if j is not None]


def _ingested(folder: Path, job: str) -> bool:
    try:
        return json.loads((folder / INGESTED).read_text()).get("job") == job
    except (OSError, ValueError, AttributeError):
        return False


def _submission(folder: Path) -> dict:
    try:
        found = json.loads((folder / SUBMISSION).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _ask(address: str | None, submission: str) -> str | None:
    """The job's status from the cluster's Jobs API (PENDING, RUNNING, SUCCEEDED, FAILED,
    STOPPED), or None when it cannot be asked."""
    if not address or not address.startswith(("http://", "https://")):
        return None
    import urllib.error  # here: the app imports this module as it starts
    import urllib.parse
    import urllib.request

    url = f"{address.rstrip('/')}/api/jobs/{urllib.parse.quote(submission, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=ASK_TIMEOUT_S) as answer:  # noqa: S310
            status = json.loads(answer.read()).get("status")
    except (OSError, ValueError, AttributeError, urllib.error.URLError):
        return None
    return str(status).upper() if status else None
