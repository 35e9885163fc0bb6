"""Indexing: scan -> diff against the catalog -> decode (threads) -> encode (batches) -> store.

Incremental and resumable: unchanged files (size + mtime) are not read again; every batch is
committed as soon as it is encoded, so an interrupted run keeps what it finished; a moved or
renamed file is recognised by its content hash and keeps its id, vector and captions; a file whose
content is already embedded elsewhere in the library reuses that vector.

Photos leave the library only when their folder is present and readable and the file is really
gone. A folder that cannot be listed, or that is empty although nothing was deleted from it since
its photos were indexed (the mount point of an unplugged disk), keeps its photos. A photo gone from
a folder in a pass over only some of the library's folders is marked missing (hidden from search,
kept with its id, vector and captions) so that the pass over the folder it moved to finds it; it
leaves on a pass over the whole library. A photo that leaves hands its captions to a photo of the
same content still in the library, or they are kept with its content hash and go back onto the
first photo with that content the library sees again.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .catalog import Catalog
from .catalog_photos import IndexedPhoto, PhotoCatalog, PhotoRow
from .config import IndexingConfig
from .errors import BadImage, Cancelled
from .imageio import DecodedImage, content_hash, decode, read_file
from .index import VectorIndex
from .progress import Emit, Progress, silent
from .scan import FileEntry, scan

if TYPE_CHECKING:
    from .models.base import DualEncoder


@dataclass
class IndexReport:
    scanned: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    missing: int = 0  # gone from a folder in a partial pass: hidden, kept until found or a whole pass
    unchanged: int = 0
    embedded: int = 0  # vectors computed by the model in this run
    reused: int = 0  # vectors copied from identical content already in the library
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    unavailable: dict[str, str] = field(default_factory=dict)  # folder left alone -> why
    captions_restored: int = 0  # kept captions that went back onto a returning photo
    cancelled: bool = False


@dataclass
class _Decoded:
    entry: FileEntry
    digest: str | None = None
    image: DecodedImage | None = None
    error: str | None = None


# An empty folder older than this before its photos were last written in the catalog was not
# emptied since (removing entries updates a folder's mtime): its photos live on an unplugged disk.
# The margin covers coarse filesystem clocks; a mistake in either direction loses no caption.
EMPTY_MARGIN_NS = 1_000_000_000


def _under(root: str) -> str:
    return root.rstrip(os.sep) + os.sep


def file_date(mtime_ns: int) -> datetime:
    """The local date of a file time, within the dates Python can hold (years 1 to 9999)."""
    try:
        return datetime.fromtimestamp(mtime_ns / 1e9)
    except (ValueError, OverflowError, OSError):
        return datetime.min if mtime_ns < 0 else datetime.max


def _epoch_ns(when: datetime) -> int:
    return int(when.replace(tzinfo=UTC).timestamp() * 1e9)  # the catalog keeps naive UTC


class Indexer:
    def __init__(self, catalog: Catalog, model: DualEncoder, index: VectorIndex,
                 config: IndexingConfig, exclude_dirs: tuple[Path, ...] = ()) -> None:
        self.catalog = catalog
        self.photos = PhotoCatalog(catalog, model.version)  # every read and write of a pass
        self.model = model
        self.index = index
        self.config = config
        self.exclude_dirs = exclude_dirs
        self.version = model.version

    # -- public ---------------------------------------------------------------------------------
    def run(self, roots: Iterable[Path], progress: Emit | None = None,
            cancel: threading.Event | None = None) -> IndexReport:
        roots = [Path(os.path.abspath(r)) for r in roots]
        report = IndexReport()
        emit = progress or silent
        emit(Progress("indexing", "scanning"))
        root_ids, rows, todo, vanished = self._prepare(roots, report)
        try:
            self._process(todo, rows, root_ids, vanished, report, emit, cancel)
        except Cancelled:
            report.cancelled = True
            raise
        finally:
            if not report.cancelled:
                self._settle(vanished, report, whole=self._covers_library(roots))
            emit(Progress("indexing", "done", len(todo), len(todo)))
        return report

    def pending(self, roots: Iterable[Path]) -> tuple[list[FileEntry], IndexReport]:
        """The first half of a pass, for photos embedded elsewhere (a cluster job): the folders
        are registered, scanned and compared with the catalog, and moved photos and missing ones
        back in place are recorded, exactly as ``run`` does. Returns the files still to be read
        and embedded. Nothing leaves the library here: the ``run`` that follows the embedding
        finds the embedded photos unchanged and settles the ones that are gone."""
        report = IndexReport()
        _, _, todo, _ = self._prepare([Path(os.path.abspath(r)) for r in roots], report)
        return todo, report

    # -- diff -----------------------------------------------------------------------------------
    def _prepare(self, roots: list[Path], report: IndexReport
                 ) -> tuple[dict[str, int], dict[str, PhotoRow], list[FileEntry],
                            dict[str, PhotoRow]]:
        """Scan and diff: (folder ids, the catalog's rows under the folders, files to read,
        photos gone from their folder)."""
        root_ids = self._ensure_roots(roots)
        found = scan(roots, self.config.exclude_globs, self.exclude_dirs)
        report.scanned = len(found.files)
        report.skipped.update(found.problems)
        rows = self._rows_under(roots)
        report.unavailable = self._unavailable(found.empty, rows)
        todo, vanished, back = self._diff(found.files, rows,
                                          {**found.problems, **report.unavailable}, report)
        self._show_again(back, rows)
        todo = self._resolve_moves(todo, vanished, rows, root_ids, report)
        return root_ids, rows, todo, vanished

    def _ensure_roots(self, roots: list[Path]) -> dict[str, int]:
        return self.photos.register_folders([str(r) for r in roots])

    def _root_of(self, path: str, root_ids: dict[str, int]) -> int | None:
        best = None
        for root, rid in root_ids.items():
            if path.startswith(_under(root)) and (best is None or len(root) > len(best[0])):
                best = (root, rid)
        return best[1] if best else None

    def _rows_under(self, roots: list[Path]) -> dict[str, PhotoRow]:
        return self.photos.under([_under(str(r)) for r in roots])

    def _unavailable(self, empty: dict[str, int], rows: dict[str, PhotoRow]) -> dict[str, str]:
        """Empty folders whose photos were not deleted from them since they were indexed: an
        unplugged disk's mount point (or an unmounted share's). A folder emptied by a person
        changed after its photos were written in the catalog, so its photos may leave."""
        if not empty:
            return {}
        paths = sorted(rows)
        out = {}
        for folder, mtime_ns in empty.items():
            prefix = _under(folder)
            seen = []
            for path in paths[bisect_left(paths, prefix):]:
                if not path.startswith(prefix):
                    break
                if rows[path].status != "missing":
                    seen.append(rows[path])
            if not seen:
                continue
            last = max(_epoch_ns(r.written_at) for r in seen)
            if mtime_ns < last - EMPTY_MARGIN_NS:
                out[folder] = (f"the folder is empty but unchanged since its {len(seen)} photos "
                               "were indexed (an unplugged disk?): they are kept until it is back")
        return out

    def _diff(self, files: dict[str, FileEntry], rows: dict[str, PhotoRow],
              kept: dict[str, str], report: IndexReport
              ) -> tuple[list[FileEntry], dict[str, PhotoRow], list[PhotoRow]]:
        """(files to read, photos gone from their folder, missing photos back where they were)."""
        todo: list[FileEntry] = []
        back: list[PhotoRow] = []
        for path, entry in files.items():
            row = rows.get(path)
            if row is not None and (row.size, row.mtime_ns) == (entry.size, entry.mtime_ns):
                if row.status == "skipped":
                    report.skipped[path] = row.reason or "skipped"
                    continue
                if row.has_vector:
                    report.unchanged += 1
                    if row.status == "missing":
                        back.append(row)
                    continue
            todo.append(entry)
        # A folder that could not be listed this time, or an unplugged disk's empty mount point,
        # keeps its photos (it may come back); so does a file that could not be looked at.
        unreadable = tuple(_under(p) for p in kept)
        vanished = {p: r for p, r in rows.items()
                    if p not in files and p not in kept and not p.startswith(unreadable)}
        return todo, vanished, back

    def _missing_elsewhere(self, rows: dict[str, PhotoRow]) -> list[PhotoRow]:
        """Photos marked missing by an earlier pass, outside this one's folders."""
        return [p for p in self.photos.missing() if p.path not in rows]

    def _show_again(self, photos: list[PhotoRow], rows: dict[str, PhotoRow]) -> None:
        """Missing photos found again (each in ``rows`` at its path): searchable with the vectors
        they kept."""
        if not photos:
            return
        ids = [p.id for p in photos]
        vecs = self.photos.show_again(ids)
        for p in photos:
            rows[p.path] = replace(p, status="ok")
        have = [i for i in ids if i in vecs]
        if have:
            self.index.add(np.array(have, dtype=np.int64), np.stack([vecs[i] for i in have]))

    def _covers_library(self, roots: list[Path]) -> bool:
        """Does this pass look at every library folder that is there and not paused? Only then
        is a photo gone from its folder known not to have moved to another one."""
        folders = self.photos.folders()
        names = {str(r) for r in roots}
        inside = tuple(_under(n) for n in names)
        return all(path in names or path.startswith(inside) or paused or not os.path.isdir(path)
                   for path, paused in folders)

    def _resolve_moves(self, todo: list[FileEntry], vanished: dict[str, PhotoRow],
                       rows: dict[str, PhotoRow], root_ids: dict[str, int],
                       report: IndexReport) -> list[FileEntry]:
        """New paths whose content is a vanished photo's, or a missing one's from an earlier pass
        over another folder: the photo moved; keep its id, vector and captions."""
        new = [e for e in todo if e.path not in rows]
        if not new:
            return todo
        by_size: dict[int, list[PhotoRow]] = {}
        for r in [*vanished.values(), *self._missing_elsewhere(rows)]:
            if r.content_hash:
                by_size.setdefault(r.size, []).append(r)
        if not by_size:
            return todo
        rest, found = [], []
        for entry in todo:
            candidates = by_size.get(entry.size) if entry.path not in rows else None
            match = None
            if candidates:
                try:
                    digest = content_hash(read_file(Path(entry.path)))
                except BadImage:
                    digest = None
                match = next((r for r in candidates if r.content_hash == digest), None)
            if match is None:
                rest.append(entry)
                continue
            candidates.remove(match)
            vanished.pop(match.path, None)
            self.photos.move(match.id, entry.path, entry.size, entry.mtime_ns,
                             self._root_of(entry.path, root_ids))
            report.moved += 1
            # as the catalog now holds it
            moved = replace(match, path=entry.path, size=entry.size, mtime_ns=entry.mtime_ns)
            if not match.has_vector:
                rest.append(entry)  # embedded (and made searchable) as it is stored
            elif match.status == "missing":
                found.append(moved)
            rows[entry.path] = moved
        self._show_again(found, rows)
        return rest

    # -- decode + encode ------------------------------------------------------------------------
    def _decode_one(self, entry: FileEntry) -> _Decoded:
        try:
            data = read_file(Path(entry.path))
            digest = content_hash(data)
            image = decode(data, size=self.model.input_size, max_pixels=self.config.max_pixels)
            return _Decoded(entry, digest, image)
        except BadImage as e:
            return _Decoded(entry, error=str(e))
        except Exception as e:  # never let one file stop the job
            return _Decoded(entry, error=f"unexpected error: {type(e).__name__}: {e}")

    def _decoded(self, todo: list[FileEntry]) -> Iterator[_Decoded]:
        workers = self.config.decode_workers or os.cpu_count() or 2
        window = max(2 * self.config.batch_size, 4 * workers)
        with ThreadPoolExecutor(workers, thread_name_prefix="chikaku-decode") as pool:
            pending: deque[Future] = deque()
            it = iter(todo)
            for entry in it:
                pending.append(pool.submit(self._decode_one, entry))
                if len(pending) >= window:
                    break
            while pending:
                yield pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(self._decode_one, nxt))

    def _process(self, todo, rows, root_ids, vanished, report, emit, cancel) -> None:
        total, done = len(todo), 0
        batch: list[_Decoded] = []
        emit(Progress("indexing", "indexing", 0, total))
        gen = self._decoded(todo)
        try:
            for item in gen:
                if item.error is not None:
                    self._record_skip(item, rows, root_ids, vanished, report)
                    done += 1
                else:
                    batch.append(item)
                if len(batch) >= self.config.batch_size:
                    self._store(batch, rows, root_ids, report)
                    done += len(batch)
                    batch = []
                emit(Progress("indexing", "indexing", done + len(batch), total,
                              path=item.entry.path))
                if cancel is not None and cancel.is_set():
                    self._store(batch, rows, root_ids, report)
                    raise Cancelled("indexing was cancelled; finished photos are kept")
            self._store(batch, rows, root_ids, report)
        finally:
            gen.close()

    def _record_skip(self, item: _Decoded, rows, root_ids, vanished, report: IndexReport) -> None:
        path = item.entry.path
        report.skipped[path] = item.error
        if item.error.startswith("file vanished"):
            if path in rows:  # gone since the scan: settled with the others that went
                vanished[path] = rows[path]
            return
        dropped = self.photos.record_skipped(
            rows[path].id if path in rows else None, path, self._root_of(path, root_ids),
            item.entry.size, item.entry.mtime_ns, item.error)
        if dropped is not None:  # it had vectors: no longer searchable
            self.index.remove([dropped])

    def _store(self, batch: list[_Decoded], rows, root_ids, report: IndexReport) -> None:
        if not batch:
            return
        vectors = self._vectors_for(batch, report)
        stored = self.photos.store([self._indexed(item, vec, rows, root_ids)
                                    for item, vec in zip(batch, vectors, strict=True)])
        for photo in stored:
            if photo.added:
                report.added += 1
            else:
                report.updated += 1
            report.captions_restored += photo.captions_restored
        ids = [photo.id for photo in stored]
        known = [i for i, item in enumerate(batch) if item.entry.path in rows]
        fresh = [i for i in range(len(batch)) if i not in set(known)]
        for part, known_ids in ((known, True), (fresh, False)):
            if part:
                self.index.add(np.array([ids[i] for i in part], dtype=np.int64),
                               np.stack([vectors[i] for i in part]), replace=known_ids)

    def _vectors_for(self, batch: list[_Decoded], report: IndexReport) -> list[np.ndarray]:
        digests = list({b.digest for b in batch})
        known = self.photos.vectors_of_content(digests)
        need = [b for b in batch if b.digest not in known]
        fresh: dict[int, np.ndarray] = {}
        if need:
            pixels = np.stack([b.image.pixels for b in need])
            for b, v in zip(need, self.model.encode_images(pixels), strict=True):
                fresh[id(b)] = v.astype(np.float32)
            report.embedded += len(need)
        report.reused += len(batch) - len(need)
        return [fresh[id(b)] if id(b) in fresh else known[b.digest] for b in batch]

    def _indexed(self, item: _Decoded, vec: np.ndarray, rows, root_ids) -> IndexedPhoto:
        e, img = item.entry, item.image
        existing = rows.get(e.path)
        return IndexedPhoto(
            known_id=existing.id if existing is not None else None, path=e.path,
            root_id=self._root_of(e.path, root_ids), size=e.size, mtime_ns=e.mtime_ns,
            content_hash=item.digest, width=img.width, height=img.height, taken_at=img.taken_at,
            date=img.taken_at or file_date(e.mtime_ns), vector=vec)

    def _settle(self, vanished: dict[str, PhotoRow], report: IndexReport, whole: bool) -> None:
        """Photos really gone from a present, readable folder. They leave when this pass covers
        the whole library (so they did not move to another folder), when nothing can recognise
        them (no content hash), or when a photo of the same content is still in the library
        (their captions go to it). Otherwise they are marked missing until found or a whole
        pass. Captions of photos that leave are kept with their content hash."""
        if not vanished:
            return
        ids = {r.id for r in vanished.values()}
        twins = set() if whole else self._present_elsewhere(vanished.values(), ids)
        leave, hide = [], []
        for r in vanished.values():
            if whole or not r.content_hash or r.content_hash in twins:
                leave.append(r.id)
            elif r.status != "missing":
                hide.append(r.id)
        self.photos.remove_and_hide(leave, hide)
        self.index.remove(leave + hide)
        report.removed += len(leave)
        report.missing += len(hide)

    def _present_elsewhere(self, photos, leaving: set[int]) -> set[str]:
        """Content hashes of these photos that another searchable photo of the library has."""
        digests = sorted({p.content_hash for p in photos if p.content_hash})
        return self.photos.searchable_content(digests, leaving)
