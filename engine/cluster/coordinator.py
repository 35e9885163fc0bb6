"""The coordinator's side of a cluster job: plan it from the catalog, ingest what it made.

The machine running Chikaku stays the only writer of the catalog. ``plan`` is the first half of a
local pass (scan, compare with the catalog, record moved photos) and writes the photos still to
embed into the job folder; ``ingest`` stores the job's shards, each in two transactions (its
new photos by the catalog's bulk insert, which leaves a path it holds alone; then the rest with
the shard's mark as taken), so a killed ingest reruns to the same catalog; then it finishes the
pass with the local indexer, which finds the embedded photos unchanged and settles the photos
that are gone, exactly as a local ``chikaku index`` would.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from ..catalog_photos import IndexedPhoto, PhotoCatalog, SkippedPhoto
from ..errors import Cancelled
from ..indexer import Indexer, IndexReport, file_date
from ..library import Library, photo_folder
from ..progress import Emit, Progress, silent
from . import ClusterError
from .jobdir import (
    INGESTED,
    MODEL,
    SHARDS,
    Plan,
    finished_count,
    finished_rows,
    pyarrow,
    read_plan,
    shards,
    write_manifest,
    write_plan,
)
from .status import remember


@dataclass
class ClusterReport:
    """What a cluster job brought into the library."""

    planned: int = 0  # photos the job was to embed
    embedded: int = 0  # vectors made on the cluster and stored
    added: int = 0
    updated: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason, from the job
    shards: int = 0  # shards taken by this ingest
    refused: dict[str, str] = field(default_factory=dict)  # shard -> why it was not taken
    finish: IndexReport | None = None  # the local pass that settles the library afterwards


def plan(library: Library, paths: list[Path | str], job_dir: Path,
         stall_s: float = 600.0) -> Plan:
    """Scan the folders, record moves as a local pass does, and write the job folder: the plan,
    the manifest of photos to embed and, for a model with a checkpoint, its folder."""
    folders = [photo_folder(p) for p in paths]
    if not folders:
        raise ClusterError("give at least one folder to index")
    job_dir = Path(job_dir).resolve()
    job_dir.mkdir(parents=True, exist_ok=True)
    with library.writer.hold("planning a cluster job"):
        model = library.model
        idx = library.index
        indexer = Indexer(library.catalog, model, idx, library.config.indexing,
                          exclude_dirs=(library.root, job_dir))
        try:
            todo, _report = indexer.pending(folders)
        finally:
            library.store.finish(idx, model)
        rec = library.active_model_record()
        for old in (SHARDS, MODEL, INGESTED):  # a new plan starts a new job
            target = job_dir / old
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        if rec.path:
            shutil.copytree(rec.path, job_dir / MODEL)
        write_manifest(job_dir, [(e.path, e.size, e.mtime_ns) for e in todo])
        made = Plan(job=Plan.new_id(), version=model.version,
                    model_config=json.loads(rec.config_json), checkpoint=bool(rec.path),
                    roots=[str(f) for f in folders], total=len(todo), library=library.identity,
                    input_size=int(model.input_size), batch_size=library.config.indexing.batch_size,
                    max_pixels=library.config.indexing.max_pixels, stall_s=stall_s)
        write_plan(job_dir, made)
        remember(library.catalog, job_dir)  # the app shows how the library's jobs stand
    return made


def finished(job_dir: Path) -> int:
    """How many of the plan's rows finished shards hold (read from the shards' names)."""
    return finished_count(job_dir)


def ingested(job_dir: Path) -> bool:
    """Has this job folder's plan been ingested whole?"""
    try:
        done = json.loads((Path(job_dir) / INGESTED).read_text())
        return done.get("job") == read_plan(job_dir).job
    except (OSError, ValueError, ClusterError):
        return False


def _root_of(path: str, roots: dict[str, int]) -> int | None:
    best = None
    for root, rid in roots.items():
        if path.startswith(root.rstrip(os.sep) + os.sep) and (best is None or
                                                              len(root) > len(best[0])):
            best = (root, rid)
    return best[1] if best else None


def _check(library: Library, made: Plan, job_dir: Path, partial: bool) -> None:
    if made.extra.get("kind") == "features":
        raise ClusterError(f"{job_dir} holds training features, not photos to index: "
                           "`chikaku cluster features` merges them itself (rerun it to finish)")
    if made.library != library.identity:
        raise ClusterError(f"the job in {job_dir} was planned for another library")
    if library.model.version != made.version:
        raise ClusterError(f"the job in {job_dir} embedded with model {made.version}, but the "
                           f"library's active model is now {library.model.version}: plan the "
                           "job again")
    missing = made.total - len(finished_rows(job_dir))
    if missing > 0 and not partial:
        raise ClusterError(f"the job in {job_dir} is not finished: {missing} of {made.total} "
                           "photos have no shard yet (submit it again to finish it)")


def ingest(library: Library, job_dir: Path, progress: Emit | None = None,
           cancel: threading.Event | None = None, partial: bool = False,
           finish: bool = True) -> ClusterReport:
    """Store the job's shards in the catalog and the index, then finish the pass locally.
    ``partial``: take the shards there are even if the job has not finished (nothing is
    finished locally then)."""
    job_dir = Path(job_dir).resolve()
    made = read_plan(job_dir)
    emit = progress or silent
    report = ClusterReport(planned=made.total)
    _check(library, made, job_dir, partial)
    found = shards(job_dir)
    with library.writer.hold("ingesting a cluster job"):
        model = library.model
        idx = library.index
        photos = PhotoCatalog(library.catalog, model.version)
        roots = photos.register_folders(made.roots)
        seen: set[int] = set()
        try:
            for n, shard in enumerate(found):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("ingesting was cancelled; the shards taken are kept")
                _take(photos, idx, made, shard.path, roots, seen, report)
                emit(Progress("indexing", "ingesting", n + 1, len(found), path=str(shard.path)))
        finally:
            library.store.finish(idx, model)
    if partial or not finish:
        return report
    report.finish = library.add_folders(made.roots, progress=progress, cancel=cancel)
    (job_dir / INGESTED).write_text(json.dumps({"job": made.job}))
    return report


def _take(photos: PhotoCatalog, idx, made: Plan, path: Path, roots: dict[str, int],
          seen: set[int], report: ClusterReport) -> None:
    """One shard, in one transaction; a shard taken before is left alone."""
    key = f"cluster:{made.job}:{path.name}"
    if photos.taken(key):
        return
    _pa, pq = pyarrow()
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # a damaged shard loses nothing: its photos are embedded locally
        report.refused[path.name] = f"cannot be read: {e}"
        return
    wrong = {r["model_version"] for r in rows} - {made.version}
    if wrong:
        report.refused[path.name] = (f"rows of model {', '.join(sorted(wrong))}, not "
                                     f"{made.version}")
        return
    rows = [r for r in rows if r["row"] not in seen]  # a shard written twice by a retried task
    seen.update(r["row"] for r in rows)
    known = photos.at([r["path"] for r in rows])
    good, bad = [], []
    for r in rows:
        row = known.get(r["path"])
        if r["reason"] is None:
            good.append(_indexed(r, row.id if row else None, roots))
        elif not r["reason"].startswith("file vanished"):  # settled by the finishing pass
            bad.append(SkippedPhoto(row.id if row else None, r["path"],
                                    _root_of(r["path"], roots), r["size"], r["mtime_ns"],
                                    r["reason"]))
            report.skipped[r["path"]] = r["reason"]
    # New photos go in by the catalog's bulk insert (a path it holds already is left alone, so
    # a rerun after a kill between the two transactions adds nothing twice); photos the catalog
    # knows, the skipped files and the shard's key go in together after them.
    fresh = [p for p in good if p.known_id is None]
    added = photos.add_many([(p.path, p.root_id, p.size, p.mtime_ns, p.content_hash, p.width,
                              p.height, p.taken_at, p.date, p.vector.tobytes()) for p in fresh])
    known = [p for p in good if p.known_id is not None]
    stored, dropped = photos.store_taken(known, bad, key)
    if added.ids:
        by_path = {p.path: p for p in fresh}
        idx.add(np.array(list(added.ids.values()), np.int64),
                np.stack([by_path[path].vector for path in added.ids]), replace=False)
    if known:
        idx.add(np.array([s.id for s in stored], np.int64), np.stack([p.vector for p in known]))
    report.added += len(added.ids) + sum(s.added for s in stored)
    report.updated += sum(not s.added for s in stored)
    if dropped:
        idx.remove(dropped)
    report.embedded += len(good)
    report.shards += 1


def _indexed(r: dict, known_id: int | None, roots: dict[str, int]) -> IndexedPhoto:
    taken = datetime.fromisoformat(r["taken_at"]) if r["taken_at"] else None
    return IndexedPhoto(
        known_id=known_id, path=r["path"], root_id=_root_of(r["path"], roots), size=r["size"],
        mtime_ns=r["mtime_ns"], content_hash=r["content_hash"], width=r["width"],
        height=r["height"], taken_at=taken, date=taken or file_date(r["mtime_ns"]),
        vector=np.frombuffer(r["vector"], np.float32).copy())
