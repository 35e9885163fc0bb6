"""The catalog as indexing reads and writes it: which photos a pass over some folders already
knows, and the writes that record what the pass found.

Each method is one transaction, exactly as large as the step of indexing it serves: a batch of
photos is stored with its vectors in one, the photos gone from their folder leave (or are hidden)
in one. Rows come back as ``PhotoRow`` values, never as ORM objects, so the indexer holds no
session and writes no SQL of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import and_, insert, or_, select, text
from sqlalchemy.orm import Session

from .catalog import Catalog, Embedding, KeptCaption, Photo, Root, utcnow
from .errors import LibraryError

# SQLite refuses statements with more than a few hundred bound values on older builds.
CHUNK = 500


@dataclass(frozen=True)
class PhotoRow:
    """A photo as the catalog held it when it was read."""

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str  # ok | skipped | missing
    reason: str | None
    written_at: datetime  # when the catalog last wrote the row (naive UTC)
    has_vector: bool  # of the model version the reader asked about


@dataclass(frozen=True)
class IndexedPhoto:
    """A photo a pass read and embedded, to be stored with its vector."""

    known_id: int | None  # the photo's row when the pass found one at this path
    path: str
    root_id: int | None
    size: int
    mtime_ns: int
    content_hash: str
    width: int
    height: int
    taken_at: datetime | None
    date: datetime
    vector: np.ndarray


@dataclass(frozen=True)
class SkippedPhoto:
    """A file a pass could not index, to be kept as a skipped photo with its reason."""

    known_id: int | None
    path: str
    root_id: int | None
    size: int
    mtime_ns: int
    reason: str


@dataclass(frozen=True)
class StoredPhoto:
    id: int
    added: bool  # a new row (else an existing one was updated)
    captions_restored: int  # kept captions of its content that went back onto it


# A row given to PhotoCatalog.add_many, in this order: what a shard of photos read and embedded
# elsewhere holds for each (``vector``: the float32 bytes of the model version, or None).
INGEST_COLUMNS = ("path", "root_id", "size", "mtime_ns", "content_hash", "width", "height",
                  "taken_at", "date", "vector")
_PG_TYPES = ["text", "int4", "int8", "int8", "text", "int4", "int4", "timestamp", "timestamp",
             "bytea"]


# What an upsert of a vector does to the row it meets (the same in PostgreSQL and SQLite).
_NEWER_VECTOR = "UPDATE SET vector = excluded.vector, created_at = excluded.created_at"


@dataclass(frozen=True)
class AddedPhotos:
    ids: dict[str, int]  # path -> id of each photo added
    present: int  # rows whose path the catalog already held: left as they were
    captions_restored: int  # kept captions of their content that went back onto them


def _checked(rows: Iterable[Sequence]) -> list[tuple]:
    out = []
    for n, row in enumerate(rows):
        row = tuple(row)
        if len(row) != len(INGEST_COLUMNS):
            raise LibraryError(f"photo row {n} has {len(row)} values, not the "
                               f"{len(INGEST_COLUMNS)} of {', '.join(INGEST_COLUMNS)}: nothing "
                               "of this batch was added")
        out.append(row)
    return out


def _row(photo: Photo, has_vector: bool) -> PhotoRow:
    return PhotoRow(photo.id, photo.path, photo.size, photo.mtime_ns, photo.content_hash,
                    photo.status, photo.reason, photo.updated_at or photo.added_at, has_vector)


class PhotoCatalog:
    """The photo rows of one catalog, with the vectors of one model version."""

    def __init__(self, catalog: Catalog, version: str) -> None:
        self.catalog = catalog
        self.version = version

    # -- reads ----------------------------------------------------------------------------------
    def register_folders(self, folders: list[str]) -> dict[str, int]:
        """The id of each folder, added as a library folder where it is not one yet."""
        with self.catalog.session() as s:
            ids = {}
            for path in folders:
                row = s.scalar(select(Root).where(Root.path == path))
                if row is None:
                    row = Root(path=path)
                    s.add(row)
                    s.flush()
                ids[path] = row.id
            return ids

    def folders(self) -> list[tuple[str, bool]]:
        """(path, paused) of every library folder."""
        with self.catalog.session() as s:
            return [(path, paused) for path, paused in s.execute(select(Root.path, Root.paused))]

    def under(self, prefixes: list[str]) -> dict[str, PhotoRow]:
        """Every photo (any status) whose path starts with one of ``prefixes`` (folders with
        their trailing separator), by path; photos and vectors are read in one transaction."""
        with self.catalog.session() as s:
            cond = or_(*[Photo.path.startswith(p, autoescape=True) for p in prefixes])
            photos = s.scalars(select(Photo).where(cond)).all()
            embedded = set(s.scalars(
                select(Embedding.photo_id).join(Photo, Photo.id == Embedding.photo_id)
                .where(Embedding.model_version == self.version, cond)).all())
        return {p.path: _row(p, p.id in embedded) for p in photos}

    def at(self, paths: list[str]) -> dict[str, PhotoRow]:
        """The photos (any status) at these exact paths, by path."""
        out: dict[str, PhotoRow] = {}
        with self.catalog.session() as s:
            for i in range(0, len(paths), CHUNK):
                part = paths[i : i + CHUNK]
                photos = s.scalars(select(Photo).where(Photo.path.in_(part))).all()
                embedded = set(s.scalars(select(Embedding.photo_id).where(
                    Embedding.photo_id.in_([p.id for p in photos]),
                    Embedding.model_version == self.version)).all())
                out.update({p.path: _row(p, p.id in embedded) for p in photos})
        return out

    def taken(self, key: str) -> bool:
        """Was the batch of photos named ``key`` (a cluster job's shard) stored already?"""
        return self.catalog.get_meta(key) is not None

    def missing(self) -> list[PhotoRow]:
        """Every photo marked missing (gone from its folder in an earlier pass)."""
        with self.catalog.session() as s:
            found = s.execute(
                select(Photo, Embedding.photo_id).outerjoin(Embedding, and_(
                    Embedding.photo_id == Photo.id, Embedding.model_version == self.version))
                .where(Photo.status == "missing")).all()
        return [_row(photo, embedded is not None) for photo, embedded in found]

    def vectors_of_content(self, digests: list[str]) -> dict[str, np.ndarray]:
        """A stored vector for each of these content hashes that some photo has."""
        with self.catalog.session() as s:
            known = dict(s.execute(
                select(Photo.content_hash, Embedding.vector)
                .join(Embedding, Embedding.photo_id == Photo.id)
                .where(Photo.content_hash.in_(digests),
                       Embedding.model_version == self.version)).all())
        return {d: np.frombuffer(v, np.float32) for d, v in known.items()}

    def searchable_content(self, digests: list[str], besides: set[int]) -> set[str]:
        """The content hashes among ``digests`` that a searchable photo not in ``besides`` has."""
        out: set[str] = set()
        with self.catalog.session() as s:
            for i in range(0, len(digests), CHUNK):
                for pid, digest in s.execute(select(Photo.id, Photo.content_hash).where(
                        Photo.content_hash.in_(digests[i : i + CHUNK]), Photo.status == "ok")):
                    if pid not in besides:
                        out.add(digest)
        return out

    # -- writes ---------------------------------------------------------------------------------
    def show_again(self, ids: list[int]) -> dict[int, np.ndarray]:
        """Missing photos found again become searchable, in one transaction that also marks the
        vectors changed. Returns the stored vectors they have, by photo id."""
        with self.catalog.session() as s:
            for i in ids:
                s.get(Photo, i).status = "ok"
            vecs = dict(s.execute(select(Embedding.photo_id, Embedding.vector).where(
                Embedding.photo_id.in_(ids), Embedding.model_version == self.version)).all())
            self.catalog.bump_generation(s)
        return {i: np.frombuffer(v, np.float32) for i, v in vecs.items()}

    def move(self, photo_id: int, path: str, size: int, mtime_ns: int,
             root_id: int | None) -> None:
        """A photo found at another path keeps its id, vectors and captions."""
        with self.catalog.session() as s:
            row = s.get(Photo, photo_id)
            row.path, row.size, row.mtime_ns = path, size, mtime_ns
            row.root_id = root_id

    def record_skipped(self, known_id: int | None, path: str, root_id: int | None, size: int,
                       mtime_ns: int, reason: str) -> int | None:
        """A file that cannot be indexed is kept as a skipped photo with its reason (added when
        the catalog has no row ``known_id``). A photo that was there loses its vectors in the
        same transaction; returns its id then (for the index to drop it), else None."""
        with self.catalog.session() as s:
            row = s.get(Photo, known_id) if known_id is not None else None
            if row is None:
                row = Photo(path=path)
                s.add(row)
            row.root_id = root_id
            row.size, row.mtime_ns = size, mtime_ns
            row.status, row.reason = "skipped", reason
            if row.id is None:  # a new row: no vectors to drop
                return None
            s.execute(Embedding.__table__.delete().where(Embedding.photo_id == row.id))
            self.catalog.bump_generation(s)
            return row.id

    def store(self, photos: list[IndexedPhoto]) -> list[StoredPhoto]:
        """A batch of photos with their vectors, in one transaction that also marks the vectors
        changed: an interrupted pass keeps every batch it stored and none of a batch it did not.
        Returns what became of each photo, in order."""
        with self.catalog.session() as s:
            out = [self._write(s, p) for p in photos]
            self.catalog.bump_generation(s)
        return out

    def store_taken(self, photos: list[IndexedPhoto], skipped: list[SkippedPhoto],
                    key: str) -> tuple[list[StoredPhoto], list[int]]:
        """A batch of photos embedded elsewhere (a cluster job's shard) and the files of it that
        cannot be indexed, in one transaction that also records ``key`` as taken: a batch is
        stored whole or not at all, and once only. Returns what became of each photo, in order,
        and the ids of photos that lost their vectors by becoming skipped (for the index)."""
        with self.catalog.session() as s:
            out = [self._write(s, p) for p in photos]
            dropped = [i for i in (self._skip(s, k) for k in skipped) if i is not None]
            self.catalog.set_meta(s, key, "taken")
            self.catalog.bump_generation(s)
        return out, dropped

    def _skip(self, s: Session, k: SkippedPhoto) -> int | None:
        row = s.get(Photo, k.known_id) if k.known_id is not None else None
        if row is None:
            row = Photo(path=k.path)
            s.add(row)
        row.root_id = k.root_id
        row.size, row.mtime_ns = k.size, k.mtime_ns
        row.status, row.reason = "skipped", k.reason
        if row.id is None:
            return None
        gone = s.execute(Embedding.__table__.delete().where(Embedding.photo_id == row.id))
        return row.id if gone.rowcount else None

    def _write(self, s: Session, p: IndexedPhoto) -> StoredPhoto:
        row = s.get(Photo, p.known_id) if p.known_id is not None else None
        changed = row is not None and row.content_hash != p.content_hash
        fresh = row is None
        if row is None:
            row = Photo(path=p.path)
            s.add(row)
        row.root_id = p.root_id
        row.size, row.mtime_ns, row.content_hash = p.size, p.mtime_ns, p.content_hash
        row.width, row.height, row.taken_at = p.width, p.height, p.taken_at
        row.date = p.date
        row.status, row.reason = "ok", None
        s.flush()
        emb = None if fresh else s.get(Embedding, (row.id, self.version))  # new: none yet
        if emb is None:
            s.add(Embedding(photo_id=row.id, model_version=self.version,
                            vector=p.vector.tobytes()))
        else:
            emb.vector = p.vector.tobytes()
        if changed:  # vectors of other model versions describe the old content
            s.execute(Embedding.__table__.delete().where(
                Embedding.photo_id == row.id, Embedding.model_version != self.version))
        restored = 0
        if fresh or changed:  # a photo that left earlier is back: so are its captions
            restored = self.catalog.restore_captions(s, row.id, p.content_hash)
        return StoredPhoto(row.id, fresh, restored)

    def add_many(self, rows: Iterable[Sequence]) -> AddedPhotos:
        """Photos read and embedded elsewhere (a shard of a cluster job), added with their
        vectors of this model version in one transaction: all of them or, on any error, none.
        Each row holds the INGEST_COLUMNS in order, as plain values. A path the catalog already
        has (or that came earlier in ``rows``) is left as it is, so a shard given twice adds
        nothing the second time. PostgreSQL receives the rows by COPY, SQLite by executemany."""
        batch = _checked(rows)
        with self.catalog.session() as s:
            if s.get_bind().dialect.name == "postgresql":
                ids, present = self._copy_new(s, batch)
            else:
                ids, present = self._insert_new(s, batch)
            restored = self._restore_kept(s, ids, batch)
            if any(r[-1] is not None and r[0] in ids for r in batch):
                self.catalog.bump_generation(s)
        return AddedPhotos(ids, present, restored)

    def _insert_new(self, s: Session, batch: list[tuple]) -> tuple[dict[str, int], int]:
        paths = list(dict.fromkeys(r[0] for r in batch))
        known: set[str] = set()
        for i in range(0, len(paths), CHUNK):
            known.update(s.scalars(select(Photo.path).where(Photo.path.in_(paths[i : i + CHUNK]))))
        now, seen, fresh = utcnow(), set(known), []
        for r in batch:
            if r[0] not in seen:
                seen.add(r[0])
                fresh.append(r)
        if not fresh:
            return {}, len(batch)
        s.execute(insert(Photo.__table__), [
            {**dict(zip(INGEST_COLUMNS[:-1], r[:-1], strict=True)), "status": "ok",
             "added_at": now, "updated_at": now} for r in fresh])
        new = [r[0] for r in fresh]
        ids: dict[str, int] = {}
        for i in range(0, len(new), CHUNK):
            ids.update(s.execute(select(Photo.path, Photo.id)
                                 .where(Photo.path.in_(new[i : i + CHUNK]))).all())
        vectors = [{"photo_id": ids[r[0]], "model_version": self.version, "vector": r[-1],
                    "norm": 1.0, "created_at": now} for r in fresh if r[-1] is not None]
        if vectors:
            s.execute(insert(Embedding.__table__), vectors)
        return ids, len(batch) - len(fresh)

    def _copy_new(self, s: Session, batch: list[tuple]) -> tuple[dict[str, int], int]:
        """COPY into a temporary table, then one INSERT … ON CONFLICT DO NOTHING into photos
        (COPY itself stops at the first path already there), then COPY of the vectors."""
        cols, photo_cols = ", ".join(INGEST_COLUMNS), ", ".join(INGEST_COLUMNS[:-1])
        typed = ", ".join(f"{c} {t}" for c, t in zip(INGEST_COLUMNS, _PG_TYPES, strict=True))
        s.execute(text(f"CREATE TEMPORARY TABLE incoming (n int4, {typed}) ON COMMIT DROP"))
        cur = s.connection().connection.driver_connection.cursor()
        with cur.copy(f"COPY incoming (n, {cols}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", *_PG_TYPES])
            for n, r in enumerate(batch):
                copy.write_row((n, *r))
        now = utcnow()
        got = s.execute(text(  # a path given twice: its first row
            f"INSERT INTO photos ({photo_cols}, status, added_at, updated_at) "
            f"SELECT DISTINCT ON (path) {photo_cols}, 'ok', :now, :now FROM incoming "
            "ORDER BY path, n ON CONFLICT (path) DO NOTHING RETURNING path, id"),
            {"now": now}).all()
        ids = dict(got)
        first: dict[str, tuple] = {}
        for r in batch:
            first.setdefault(r[0], r)
        vectors = [(ids[p], r[-1]) for p, r in first.items() if p in ids and r[-1] is not None]
        if vectors:
            with cur.copy("COPY embeddings (photo_id, model_version, vector, norm, created_at) "
                          "FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text", "bytea", "float8", "timestamp"])
                for pid, vector in vectors:
                    copy.write_row((pid, self.version, vector, 1.0, now))
        return ids, len(batch) - len(ids)

    def put_vectors(self, rows: Iterable[tuple[int, bytes]]) -> int:
        """Vectors of this model version for photos already in the catalog, as (photo id,
        float32 bytes) rows, in one transaction: a photo's vector of this version is added, or
        replaced (the last of a photo given twice wins). A photo id the catalog does not have
        fails the whole call (IntegrityError) and nothing is stored. Returns how many rows came.
        PostgreSQL receives them by COPY, SQLite by executemany."""
        batch = [(int(pid), vector) for pid, vector in rows]
        if not batch:
            return 0
        now = utcnow()
        with self.catalog.session() as s:
            if s.get_bind().dialect.name == "postgresql":
                s.execute(text("CREATE TEMPORARY TABLE incoming_vectors (n int4, photo_id int4, "
                               "vector bytea) ON COMMIT DROP"))
                cur = s.connection().connection.driver_connection.cursor()
                with cur.copy("COPY incoming_vectors (n, photo_id, vector) FROM STDIN "
                              "(FORMAT BINARY)") as copy:
                    copy.set_types(["int4", "int4", "bytea"])
                    for n, (pid, vector) in enumerate(batch):
                        copy.write_row((n, pid, vector))
                s.execute(text(
                    "INSERT INTO embeddings (photo_id, model_version, vector, norm, created_at) "
                    "SELECT DISTINCT ON (photo_id) photo_id, :v, vector, 1.0, :now "
                    "FROM incoming_vectors ORDER BY photo_id, n DESC "
                    f"ON CONFLICT (photo_id, model_version) DO {_NEWER_VECTOR}"),
                    {"v": self.version, "now": now})
            else:
                s.execute(text(
                    "INSERT INTO embeddings (photo_id, model_version, vector, norm, created_at) "
                    "VALUES (:pid, :v, :vector, 1.0, :now) "
                    f"ON CONFLICT (photo_id, model_version) DO {_NEWER_VECTOR}"),
                    [{"pid": pid, "v": self.version, "vector": vector, "now": now}
                     for pid, vector in batch])
            self.catalog.bump_generation(s)
        return len(batch)

    def _restore_kept(self, s: Session, ids: dict[str, int], batch: list[tuple]) -> int:
        """Captions kept for the content of photos just added go back onto them."""
        hashes = {r[4]: ids[r[0]] for r in reversed(batch) if r[4] and r[0] in ids}
        digests, kept = list(hashes), set()
        for i in range(0, len(digests), CHUNK):
            kept.update(s.scalars(select(KeptCaption.content_hash).distinct().where(
                KeptCaption.content_hash.in_(digests[i : i + CHUNK]))))
        return sum(self.catalog.restore_captions(s, hashes[d], d) for d in sorted(kept))

    def remove_and_hide(self, leaving: list[int], hidden: list[int]) -> None:
        """In one transaction: the ``leaving`` photos leave the library with their vectors (their
        captions go to a photo of the same content, else are kept with the content hash), and
        the ``hidden`` ones are marked missing (kept with captions and vectors)."""
        with self.catalog.session() as s:
            self.catalog.delete_photos(s, leaving, keep_captions=True)
            self.catalog.mark_missing(s, hidden)
