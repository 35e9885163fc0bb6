"""Indexing: scan -> diff against the catalog -> decode (threads) -> encode (batches) -> store.

Incremental and resumable: unchanged files (size + mtime) are not read again; every batch is
committed as soon as it is encoded, so an interrupted run keeps what it finished; a moved or
renamed file is recognised by its content hash and keeps its id, vector and captions; a file whose
content is already embedded elsewhere in the library reuses that vector.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import or_, select

from .catalog import Catalog, Embedding, Photo, Root
from .config import IndexingConfig
from .errors import BadImage, Cancelled
from .imageio import DecodedImage, content_hash, decode, read_file
from .index import VectorIndex
from .models.base import DualEncoder
from .scan import FileEntry, scan


@dataclass
class Progress:
    stage: str  # scanning | indexing | done
    done: int = 0
    total: int = 0
    path: str | None = None


@dataclass
class IndexReport:
    scanned: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0  # vectors computed by the model in this run
    reused: int = 0  # vectors copied from identical content already in the library
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    cancelled: bool = False


@dataclass
class _Decoded:
    entry: FileEntry
    digest: str | None = None
    image: DecodedImage | None = None
    error: str | None = None


ProgressFn = Callable[[Progress], None]


def _under(root: str) -> str:
    return root.rstrip(os.sep) + os.sep


class Indexer:
    def __init__(self, catalog: Catalog, model: DualEncoder, index: VectorIndex,
                 config: IndexingConfig, exclude_dirs: tuple[Path, ...] = ()) -> None:
        self.catalog = catalog
        self.model = model
        self.index = index
        self.config = config
        self.exclude_dirs = exclude_dirs
        self.version = model.version

    # -- public ---------------------------------------------------------------------------------
    def run(self, roots: Iterable[Path], progress: ProgressFn | None = None,
            cancel: threading.Event | None = None) -> IndexReport:
        roots = [Path(os.path.abspath(r)) for r in roots]
        report = IndexReport()
        emit = progress or (lambda _p: None)
        emit(Progress("scanning"))
        root_ids = self._ensure_roots(roots)
        found = scan(roots, self.config.exclude_globs, self.exclude_dirs)
        report.scanned = len(found.files)
        report.skipped.update(found.problems)
        rows = self._rows_under(roots)
        todo, vanished = self._diff(found.files, rows, found.problems, report)
        todo = self._resolve_moves(todo, vanished, rows, root_ids, report)
        try:
            self._process(todo, rows, root_ids, report, emit, cancel)
        except Cancelled:
            report.cancelled = True
            raise
        finally:
            if not report.cancelled:
                self._remove(vanished, report)
            emit(Progress("done", len(todo), len(todo)))
        return report

    # -- diff -----------------------------------------------------------------------------------
    def _ensure_roots(self, roots: list[Path]) -> dict[str, int]:
        with self.catalog.session() as s:
            ids = {}
            for r in roots:
                row = s.scalar(select(Root).where(Root.path == str(r)))
                if row is None:
                    row = Root(path=str(r))
                    s.add(row)
                    s.flush()
                ids[str(r)] = row.id
            return ids

    def _root_of(self, path: str, root_ids: dict[str, int]) -> int | None:
        best = None
        for root, rid in root_ids.items():
            if path.startswith(_under(root)) and (best is None or len(root) > len(best[0])):
                best = (root, rid)
        return best[1] if best else None

    def _rows_under(self, roots: list[Path]) -> dict[str, Photo]:
        with self.catalog.session() as s:
            cond = or_(*[Photo.path.startswith(_under(str(r)), autoescape=True) for r in roots])
            photos = s.scalars(select(Photo).where(cond)).all()
            embedded = set(s.scalars(
                select(Embedding.photo_id).join(Photo, Photo.id == Embedding.photo_id)
                .where(Embedding.model_version == self.version, cond)).all())
        for p in photos:
            p.has_vector = p.id in embedded  # type: ignore[attr-defined]
        return {p.path: p for p in photos}

    def _diff(self, files: dict[str, FileEntry], rows: dict[str, Photo],
              problems: dict[str, str], report: IndexReport
              ) -> tuple[list[FileEntry], dict[str, Photo]]:
        todo: list[FileEntry] = []
        for path, entry in files.items():
            row = rows.get(path)
            if row is not None and (row.size, row.mtime_ns) == (entry.size, entry.mtime_ns):
                if row.status == "skipped":
                    report.skipped[path] = row.reason or "skipped"
                    continue
                if row.has_vector:  # type: ignore[attr-defined]
                    report.unchanged += 1
                    continue
            todo.append(entry)
        # A folder that could not be listed this time keeps its photos (it may come back).
        unreadable = tuple(_under(p) for p in problems)
        vanished = {p: r for p, r in rows.items()
                    if p not in files and p not in problems and not p.startswith(unreadable)}
        return todo, vanished

    def _resolve_moves(self, todo: list[FileEntry], vanished: dict[str, Photo],
                       rows: dict[str, Photo], root_ids: dict[str, int],
                       report: IndexReport) -> list[FileEntry]:
        """New paths whose content is a vanished photo's: the photo moved; keep its id."""
        if not vanished:
            return todo
        by_size: dict[int, list[Photo]] = {}
        for r in vanished.values():
            if r.content_hash:
                by_size.setdefault(r.size, []).append(r)
        rest = []
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
            del vanished[match.path]
            with self.catalog.session() as s:
                row = s.get(Photo, match.id)
                row.path, row.size, row.mtime_ns = entry.path, entry.size, entry.mtime_ns
                row.root_id = self._root_of(entry.path, root_ids)
            report.moved += 1
            if not match.has_vector:  # type: ignore[attr-defined]
                rest.append(entry)
            match.path = entry.path
            rows[entry.path] = match
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

    def _process(self, todo, rows, root_ids, report, emit, cancel) -> None:
        total, done = len(todo), 0
        batch: list[_Decoded] = []
        emit(Progress("indexing", 0, total))
        gen = self._decoded(todo)
        try:
            for item in gen:
                if item.error is not None:
                    self._record_skip(item, rows, root_ids, report)
                    done += 1
                else:
                    batch.append(item)
                if len(batch) >= self.config.batch_size:
                    self._store(batch, rows, root_ids, report)
                    done += len(batch)
                    batch = []
                emit(Progress("indexing", done + len(batch), total, item.entry.path))
                if cancel is not None and cancel.is_set():
                    self._store(batch, rows, root_ids, report)
                    raise Cancelled("indexing was cancelled; finished photos are kept")
            self._store(batch, rows, root_ids, report)
        finally:
            gen.close()

    def _record_skip(self, item: _Decoded, rows, root_ids, report: IndexReport) -> None:
        path = item.entry.path
        report.skipped[path] = item.error
        vanished = item.error.startswith("file vanished")
        with self.catalog.session() as s:
            row = s.get(Photo, rows[path].id) if path in rows else None
            if vanished:
                if row is not None:
                    self.catalog.delete_photos(s, [row.id])
                    self.index.remove([row.id])
                return
            if row is None:
                row = Photo(path=path)
                s.add(row)
            row.root_id = self._root_of(path, root_ids)
            row.size, row.mtime_ns = item.entry.size, item.entry.mtime_ns
            row.status, row.reason = "skipped", item.error
            if row.id is not None:
                s.execute(Embedding.__table__.delete().where(Embedding.photo_id == row.id))
                self.catalog.bump_generation(s)
                self.index.remove([row.id])

    def _store(self, batch: list[_Decoded], rows, root_ids, report: IndexReport) -> None:
        if not batch:
            return
        vectors = self._vectors_for(batch, report)
        ids = []
        with self.catalog.session() as s:
            for item, vec in zip(batch, vectors, strict=True):
                ids.append(self._write_row(s, item, vec, rows, root_ids, report))
            self.catalog.bump_generation(s)
        known = [i for i, item in enumerate(batch) if item.entry.path in rows]
        fresh = [i for i in range(len(batch)) if i not in set(known)]
        for part, replace in ((known, True), (fresh, False)):
            if part:
                self.index.add(np.array([ids[i] for i in part], dtype=np.int64),
                               np.stack([vectors[i] for i in part]), replace=replace)

    def _vectors_for(self, batch: list[_Decoded], report: IndexReport) -> list[np.ndarray]:
        digests = list({b.digest for b in batch})
        with self.catalog.session() as s:
            known = dict(s.execute(
                select(Photo.content_hash, Embedding.vector)
                .join(Embedding, Embedding.photo_id == Photo.id)
                .where(Photo.content_hash.in_(digests),
                       Embedding.model_version == self.version)).all())
        need = [b for b in batch if b.digest not in known]
        fresh: dict[int, np.ndarray] = {}
        if need:
            pixels = np.stack([b.image.pixels for b in need])
            for b, v in zip(need, self.model.encode_images(pixels), strict=True):
                fresh[id(b)] = v.astype(np.float32)
            report.embedded += len(need)
        report.reused += len(batch) - len(need)
        return [fresh[id(b)] if id(b) in fresh else np.frombuffer(known[b.digest], np.float32)
                for b in batch]

    def _write_row(self, s, item: _Decoded, vec: np.ndarray, rows, root_ids,
                   report: IndexReport) -> int:
        e, img = item.entry, item.image
        existing = rows.get(e.path)
        row = s.get(Photo, existing.id) if existing is not None else None
        changed = row is not None and row.content_hash != item.digest
        if row is None:
            row = Photo(path=e.path)
            s.add(row)
            report.added += 1
        else:
            report.updated += 1
        row.root_id = self._root_of(e.path, root_ids)
        row.size, row.mtime_ns, row.content_hash = e.size, e.mtime_ns, item.digest
        row.width, row.height, row.taken_at = img.width, img.height, img.taken_at
        row.date = img.taken_at or datetime.fromtimestamp(e.mtime_ns / 1e9)
        row.status, row.reason = "ok", None
        s.flush()
        emb = s.get(Embedding, (row.id, self.version))
        if emb is None:
            s.add(Embedding(photo_id=row.id, model_version=self.version, vector=vec.tobytes()))
        else:
            emb.vector = vec.tobytes()
        if changed:  # vectors of other model versions describe the old content
            s.execute(Embedding.__table__.delete().where(
                Embedding.photo_id == row.id, Embedding.model_version != self.version))
        return row.id

    def _remove(self, vanished: dict[str, Photo], report: IndexReport) -> None:
        ids = [r.id for r in vanished.values()]
        if not ids:
            return
        with self.catalog.session() as s:
            self.catalog.delete_photos(s, ids)
        self.index.remove(ids)
        report.removed += len(ids)
