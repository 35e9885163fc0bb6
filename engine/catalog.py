"""The catalog: the library's source of truth, in SQLite (WAL) through SQLAlchemy 2.

Photos, the folders they were added from, captions, models and one embedding per photo and model
version. The FAISS index is only a cache of the ``embeddings`` rows; ``vectors_generation`` in
``meta`` changes whenever those rows do, so a stale index file is recognised and rebuilt.

In SQLite the catalog also keeps a full-text index of each searchable photo's words: its
captions, and its folder names and file name from the library folder down (an FTS5 table with the
``porter`` tokenizer, so "beaches" finds "beach", in any case). Triggers keep it in step with
every write to ``photos`` and ``captions``, whoever makes it. PostgreSQL keeps the same words in
a ``tsvector`` table (catalog_pg.py); another database has no such index and word search falls
back to ``LIKE``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    and_,
    create_engine,
    delete,
    event,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from . import catalog_pg
from .config import DATABASE_ENV
from .errors import LibraryError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Root(Base):
    """A folder the person added to the library."""

    __tablename__ = "roots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    added_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Unused (``paused`` says whether a folder is watched), but existing catalogs declare it NOT
    # NULL, so new rows still fill it in.
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class Photo(Base):
    __tablename__ = "photos"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root_id: Mapped[int | None] = mapped_column(ForeignKey("roots.id", ondelete="SET NULL"),
                                                index=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    # 64-bit: a file's mtime in nanoseconds (and a video's size) overflow a 32-bit column, and
    # PostgreSQL's INTEGER is 32 bits (SQLite's integers are 64-bit whatever the column says)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The photo's date for filters and sorting: EXIF date taken, else the file's mtime.
    date: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    # ok | skipped | missing (gone from its folder in a pass over only some of the library's
    # folders: hidden from search, kept with its captions and vector until found elsewhere)
    status: Mapped[str] = mapped_column(String(16), default="ok", index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    captions: Mapped[list[Caption]] = relationship(
        back_populates="photo", cascade="all, delete-orphan", passive_deletes=True)


class Caption(Base):
    __tablename__ = "captions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32), default="user")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    photo: Mapped[Photo] = relationship(back_populates="captions")


class KeptCaption(Base):
    """A caption of a photo that left the library, kept with the photo's content hash: it goes
    back onto the first photo with that content the library sees again, at any path."""

    __tablename__ = "kept_captions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32), default="user")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    kept_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ModelRecord(Base):
    __tablename__ = "models"
    version: Mapped[str] = mapped_column(String(80), primary_key=True)
    family: Mapped[str] = mapped_column(String(32))
    parent: Mapped[str | None] = mapped_column(String(80))
    path: Mapped[str | None] = mapped_column(Text)  # checkpoint folder; None for built-ins
    config_json: Mapped[str] = mapped_column(Text, default="{}")
    info_json: Mapped[str] = mapped_column(Text, default="{}")
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    @property
    def info(self) -> dict:
        return json.loads(self.info_json or "{}")


class Embedding(Base):
    __tablename__ = "embeddings"
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"),
                                          primary_key=True)
    model_version: Mapped[str] = mapped_column(String(80), primary_key=True, index=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    # Unused (vectors are stored unit-length), but NOT NULL in existing catalogs: still filled in.
    norm: Mapped[float] = mapped_column(Float, default=1.0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


def _v1_to_v2(s: Session) -> None:
    """Schema 2: folders can be paused (not watched, photos kept)."""
    s.execute(text("ALTER TABLE roots ADD COLUMN paused BOOLEAN NOT NULL DEFAULT FALSE"))


# The words of a photo: its captions, and its path from the library folder's own name down
# ("Yorkshire 2019/Bob/IMG_0042.jpg": the tokenizer splits at "/", "_", "." and spaces).
TEXT_TABLE = "photo_text"
_PLACE = ("substr(p.path, length(rtrim(coalesce(r.path, ''), "
          "replace(coalesce(r.path, ''), '/', ''))) + 1)")


def _text_refresh(photo: str) -> str:
    """SQL statements that make the text row of one photo (an SQL expression) current."""
    return (f"DELETE FROM {TEXT_TABLE} WHERE rowid = {photo};"
            f" INSERT INTO {TEXT_TABLE}(rowid, captions, place)"
            " SELECT p.id, coalesce((SELECT group_concat(c.text, ' ') FROM captions c"
            f" WHERE c.photo_id = p.id), ''), {_PLACE} FROM photos p"
            f" LEFT JOIN roots r ON r.id = p.root_id WHERE p.id = {photo} AND p.status = 'ok';")


_TEXT_SCHEMA = [
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {TEXT_TABLE} USING fts5(captions, place, "
    "tokenize = 'porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS photo_text_ins AFTER INSERT ON photos BEGIN "
    + _text_refresh("NEW.id") + " END",
    "CREATE TRIGGER IF NOT EXISTS photo_text_upd AFTER UPDATE OF path, status, root_id ON photos "
    f"BEGIN DELETE FROM {TEXT_TABLE} WHERE rowid = OLD.id; " + _text_refresh("NEW.id") + " END",
    "CREATE TRIGGER IF NOT EXISTS photo_text_del AFTER DELETE ON photos BEGIN "
    f"DELETE FROM {TEXT_TABLE} WHERE rowid = OLD.id; END",
    "CREATE TRIGGER IF NOT EXISTS caption_text_ins AFTER INSERT ON captions BEGIN "
    + _text_refresh("NEW.photo_id") + " END",
    "CREATE TRIGGER IF NOT EXISTS caption_text_upd AFTER UPDATE ON captions BEGIN "
    + _text_refresh("OLD.photo_id") + " " + _text_refresh("NEW.photo_id") + " END",
    "CREATE TRIGGER IF NOT EXISTS caption_text_del AFTER DELETE ON captions BEGIN "
    + _text_refresh("OLD.photo_id") + " END",
]


def _create_text_index(s: Session) -> None:
    """The full-text table, its triggers, and a row for every searchable photo (SQLite built
    without FTS5: none, and word search falls back to LIKE). PostgreSQL: its own (catalog_pg)."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        catalog_pg.create_text_index(s)
    if dialect != "sqlite":
        return
    try:
        with s.begin_nested():
            for statement in _TEXT_SCHEMA:
                s.execute(text(statement))
            s.execute(text(f"DELETE FROM {TEXT_TABLE}"))
            s.execute(text(f"INSERT INTO {TEXT_TABLE}(rowid, captions, place) SELECT p.id, "
                           "coalesce((SELECT group_concat(c.text, ' ') FROM captions c "
                           f"WHERE c.photo_id = p.id), ''), {_PLACE} FROM photos p "
                           "LEFT JOIN roots r ON r.id = p.root_id WHERE p.status = 'ok'"))
    except OperationalError as e:  # "no such module: fts5"
        log.warning("no full-text index of captions and file names: %s", e)


def _v2_to_v3(s: Session) -> None:
    """Schema 3: a full-text index of captions, folder and file names (kept by triggers)."""
    _create_text_index(s)


def _quoted(word: str) -> str:
    """One word or phrase as an FTS5 string (its tokens are found in order, stemmed)."""
    return '"' + word.replace('"', '""') + '"'


def _v3_to_v4(s: Session) -> None:
    """Schema 4: a photo's size and mtime are 64-bit columns. SQLite stores every integer in up
    to 64 bits whatever its column's type, so only another database has columns to widen."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("ALTER TABLE photos ALTER COLUMN size TYPE BIGINT, "
                       "ALTER COLUMN mtime_ns TYPE BIGINT"))
        catalog_pg.create_text_index(s)  # words searched as in SQLite, stemmed and ranked


# Migrations: MIGRATIONS[n] upgrades a catalog from schema n to n + 1, keeping its data.
MIGRATIONS: dict[int, Callable[[Session], None]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}
# Steps that change nothing in a SQLite file but its schema version: no backup copy for them.
_SQLITE_UNCHANGED = {3}


def _unusable(url: str, e: Exception) -> str:
    """What to tell a person when the database refuses a read or a write."""
    orig = getattr(e, "orig", None)
    why = str(orig if orig is not None else e)
    low = why.lower()
    hint = ("; the file is damaged: restore it from a backup, or move it aside to start a new "
            "library (its photos are then indexed again, but its captions are not known to it)"
            if "not a database" in low or "malformed" in low else
            "; the disk may be full" if "full" in low or "i/o" in low else
            "; the library folder may be read-only" if "readonly" in low or "open" in low else
            "")
    return f"the catalog at {url} cannot be used: {why}{hint}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_datetime(value: str | None) -> datetime | None:
    """A date as SQLAlchemy keeps it in SQLite ("2024-05-01 12:00:00.000000"), read back."""
    return None if value is None else datetime.fromisoformat(value)


def _catalog_fault(e: DatabaseError) -> bool:
    """An error of the database itself (unreadable, damaged, full), not of one statement's data
    (a constraint, which its caller handles)."""
    return isinstance(e, OperationalError) or type(e) is DatabaseError


def _engine(url: str, kwargs: dict) -> Engine:
    """The SQLAlchemy engine for a URL, or a LibraryError naming what is wrong with the URL."""
    try:
        return create_engine(url, **kwargs)
    except ImportError as e:
        raise LibraryError(f"the database driver for {_shown_url(url)} is not installed "
                           f"(no module {e.name!r}): install it, or unset ${DATABASE_ENV} to "
                           "keep the catalog in the library folder") from e
    except (ArgumentError, ValueError) as e:
        raise LibraryError(f"the catalog database URL {_shown_url(url)} cannot be used ({e}): "
                           f"check ${DATABASE_ENV}") from e


def _shown_url(url: str) -> str:
    """The URL without its password (a SQLite catalog: its file), for messages."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            return repr(parsed.database)
        return repr(parsed.render_as_string(hide_password=True))
    except (ArgumentError, ValueError):
        return repr(url.split("@")[-1] if "@" in url else url)


def _home_of(folder: Path) -> str:
    """Where a library lives, as ``inode:device:real path``."""
    st = os.stat(folder)
    return f"{st.st_ino}:{st.st_dev}:{os.path.realpath(folder)}"


def _same_home(recorded: str | None, here: str) -> bool:
    """The same folder: the same inode on the same device (moved within its disk, or opened
    through a link), or the same inode at the same path (a share mounted by another machine).
    A copy has a new inode; a library recorded before homes were kept gets a new name once."""
    if not recorded:
        return False
    ino, dev, path = recorded.split(":", 2)
    ino_here, dev_here, path_here = here.split(":", 2)
    return ino == ino_here and (dev == dev_here or path == path_here)


@dataclass
class CatalogCounts:
    photos: int  # searchable
    embedded: int  # vectors of the model version asked about
    skipped: list[tuple[str, str]]  # (path, reason), by path
    captions: int
    missing: int  # gone from their folder, kept (with captions) until found elsewhere
    kept_captions: int  # of photos that left, waiting for that content to come back


class Catalog:
    """Opens (creating or migrating) a catalog and hands out short transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgres")
        self._damaged: dict[str, set[int]] = {}  # vectors() found these rows not finite
        # a database server may have closed a pooled connection (restarted, idle timeout): such
        # a connection is replaced before use instead of failing the next read
        kwargs = ({"connect_args": {"timeout": 30, "check_same_thread": False}} if self.is_sqlite
                  else {"pool_pre_ping": True})
        self.engine: Engine = _engine(url, kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self._prepare()
            self.has_text_index = self._has_text_table()
        except DatabaseError as e:
            if not _catalog_fault(e):
                raise
            raise LibraryError(_unusable(_shown_url(url), e)) from e

    def _prepare(self) -> None:
        with self.session() as s:
            fresh = not self.engine.dialect.has_table(s.connection(), "meta")
            # A first creation cut short (the tables are made one at a time) is finished now:
            # the schema version is written last, in the same transaction as the first data.
            fresh = fresh or s.get(Meta, "schema_version") is None
        if fresh:
            Base.metadata.create_all(self.engine)
            with self.session() as s:
                _create_text_index(s)
                s.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
                s.add(Meta(key="vectors_generation", value="0"))
            return
        current = int(self.get_meta("schema_version") or 0)
        if current > SCHEMA_VERSION:
            raise LibraryError(
                f"this library was written by a newer Chikaku (catalog schema {current}; this "
                f"version understands up to {SCHEMA_VERSION}). Upgrade Chikaku to open it.")
        if current < SCHEMA_VERSION:
            self._migrate(current)
        Base.metadata.create_all(self.engine)  # tables added without data changes

    def _migrate(self, current: int) -> None:
        """Each step in its own transaction (PostgreSQL changes tables transactionally too); a
        SQLite file is copied aside first when a step changes more than its version."""
        db = self.engine.url.database
        changes = set(range(current, SCHEMA_VERSION)) - _SQLITE_UNCHANGED
        if self.is_sqlite and db and Path(db).exists() and changes:
            backup = Path(f"{db}.schema{current}.bak")
            with self.engine.connect() as c:
                c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            shutil.copy2(db, backup)
        while current < SCHEMA_VERSION:
            step = MIGRATIONS.get(current)
            if step is None:
                raise LibraryError(f"no migration from catalog schema {current}")
            with self.session() as s:
                step(s)
                s.execute(update(Meta).where(Meta.key == "schema_version")
                          .values(value=str(current + 1)))
            current += 1

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One short transaction: committed on success, rolled back on any error. A catalog
        that cannot be read or written (full disk, read-only folder) is a LibraryError."""
        s = Session(self.engine, expire_on_commit=False)
        try:
            yield s
            s.commit()
        except DatabaseError as e:
            with suppress(Exception):  # the connection may be as broken as the disk
                s.rollback()
            if not _catalog_fault(e):
                raise
            raise LibraryError(_unusable(_shown_url(self.url), e)) from e
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """One short read on a plain connection, for the reads every search makes: without the
        ORM's session and objects they cost a tenth (0.03 against 0.3 ms for one meta value).
        Faults as ``session``'s."""
        try:
            with self.engine.connect() as c:
                yield c
        except DatabaseError as e:
            if not _catalog_fault(e):
                raise
            raise LibraryError(_unusable(_shown_url(self.url), e)) from e

    def _rows(self, sql: str, params: tuple | list = (), refused_is_empty: bool = False
              ) -> list[tuple]:
        """The rows of one statement in SQLite's own SQL (``?`` parameters), read with the
        driver's cursor on a pooled connection: for the reads every search makes, without
        SQLAlchemy's statement and per-row work (a meta value in 0.05 ms instead of 0.35, a
        page of 200 results' rows in a fifth of the time). SQLite only; faults as
        ``session``'s, except that ``refused_is_empty`` makes a refused statement no rows (a
        full-text query FTS5 cannot read: no photo holds its words)."""
        with self.reading() as c:
            cur = c.connection.driver_connection.cursor()
            try:
                return cur.execute(sql, params).fetchall()
            except sqlite3.OperationalError as e:  # unreadable, locked, or a refused statement
                if refused_is_empty:
                    log.info("statement refused (%s): %s", e, sql)
                    return []
                raise LibraryError(_unusable(_shown_url(self.url), e)) from e
            except sqlite3.DatabaseError as e:  # damaged; a constraint's error is the caller's
                if type(e) is not sqlite3.DatabaseError:
                    raise
                raise LibraryError(_unusable(_shown_url(self.url), e)) from e
            finally:
                cur.close()

    # -- meta -----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        if self.is_sqlite:
            rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
            return rows[0][0] if rows else None
        with self.reading() as c:
            return c.execute(select(Meta.value).where(Meta.key == key)).scalar()

    def set_meta(self, s: Session, key: str, value: str) -> None:
        row = s.get(Meta, key)
        if row is None:
            s.add(Meta(key=key, value=value))
        else:
            row.value = value

    def put_meta(self, key: str, value: str) -> None:
        """Set one meta value in its own transaction. Two threads setting a new key at once (two
        first searches calibrating the same model) both find it absent: the second insert then
        meets the first's row, and becomes an update (the last value wins)."""
        try:
            with self.session() as s:
                self.set_meta(s, key, value)
        except IntegrityError:
            with self.session() as s:
                s.execute(update(Meta).where(Meta.key == key).values(value=value))

    def bump_generation(self, s: Session) -> None:
        s.execute(update(Meta).where(Meta.key == "vectors_generation")
                  .values(value=func.cast(func.cast(Meta.value, Integer) + 1, String)))

    def generation(self) -> int:
        return int(self.get_meta("vectors_generation") or 0)

    # -- vectors --------------------------------------------------------------------------------
    def identity(self, home: Path | None = None) -> str:
        """This catalog's own name: a saved index names the catalog it was built from, so one
        copied in from another library is never taken for this one's.

        ``home``: the library folder holding this catalog. The name is kept with the folder it
        was made in (its inode, device and real path); opened from another folder (a copy made
        with ``cp -a``, or a library moved to another disk) the catalog gets a new name, so the
        copy and its original never take each other's index files (a moved library rebuilds its
        index once). The same folder moved within its disk keeps its inode and its name."""
        made = self.get_meta("library_id")
        here = _home_of(home) if home is not None else None
        if made is not None and (here is None or _same_home(self.get_meta("library_home"), here)):
            return made
        try:
            with self.session() as s:
                self.set_meta(s, "library_id", uuid.uuid4().hex)
                if here is not None:
                    self.set_meta(s, "library_home", here)
        except LibraryError:  # read-only: stamps name no library, the other checks remain
            return ""
        except DatabaseError:  # another process made it first
            pass
        return self.get_meta("library_id") or ""

    def _searchable(self, version: str):
        return (select(Embedding.photo_id, Embedding.vector)
                .join(Photo, Photo.id == Embedding.photo_id)
                .where(Embedding.model_version == version, Photo.status == "ok")
                .order_by(Embedding.photo_id))

    def vector_ids(self, version: str) -> np.ndarray:
        """The ids of the photos one model version's vectors make searchable."""
        with self.session() as s:
            return np.array(s.scalars(self._searchable(version).with_only_columns(
                Embedding.photo_id)).all(), dtype=np.int64)

    def vectors(self, version: str, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All stored (ids, vectors) of one model version, for rebuilding the index. A damaged
        row (not ``dim`` floats, or not finite) is left out and reported in the log; the next
        indexing pass embeds its photo again (see drop_damaged_vectors)."""
        with self.session() as s:
            rows = s.execute(self._searchable(version)).all()
        if dim is None and rows:  # the size nearly every row has
            sizes = [len(r[1]) for r in rows]
            dim = max(set(sizes), key=sizes.count) // 4
        good = [r for r in rows if len(r[1]) == 4 * dim] if rows else []
        if not good:
            return np.zeros(0, dtype=np.int64), np.zeros((0, dim or 0), dtype=np.float32)
        ids = np.fromiter((r[0] for r in good), dtype=np.int64, count=len(good))
        vecs = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in good])
        finite = np.isfinite(vecs).all(axis=1)
        damaged = sorted({r[0] for r in rows} - set(ids[finite].tolist()))
        if damaged:
            self._damaged.setdefault(version, set()).update(damaged)
            log.warning("%d damaged vectors of model %s left out of the index (photo ids %s); "
                        "indexing embeds those photos again", len(damaged), version,
                        ", ".join(map(str, damaged[:10])))
        return ids[finite], vecs[finite]

    def vectors_by_id(self, version: str, ids: list[int], dim: int
                      ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of one model version for these photos; those without an intact
        vector are left out."""
        got: list[tuple[int, np.ndarray]] = []
        with self.session() as s:
            for i in range(0, len(ids), 500):
                got += [(pid, np.frombuffer(v, dtype=np.float32)) for pid, v in s.execute(
                    select(Embedding.photo_id, Embedding.vector).where(
                        Embedding.model_version == version,
                        Embedding.photo_id.in_(ids[i : i + 500]))) if len(v) == 4 * dim]
        got = [(pid, v) for pid, v in got if np.isfinite(v).all()]
        if not got:
            return np.zeros(0, np.int64), np.zeros((0, dim), dtype=np.float32)
        return (np.array([pid for pid, _ in got], dtype=np.int64),
                np.stack([v for _, v in got]))

    def drop_damaged_vectors(self, version: str, dim: int) -> int:
        """Delete the rows of a model version that are not ``dim`` floats, or that vectors()
        found not finite, so that indexing embeds their photos again. Returns how many."""
        with self.session() as s:
            bad = set(s.scalars(select(Embedding.photo_id).where(
                Embedding.model_version == version,
                func.length(Embedding.vector) != 4 * dim)).all())
            bad |= self._damaged.pop(version, set())
            if bad:
                s.execute(delete(Embedding).where(Embedding.model_version == version,
                                                  Embedding.photo_id.in_(sorted(bad))))
                self.bump_generation(s)
        return len(bad)

    def vector_of(self, photo_id: int, version: str) -> np.ndarray | None:
        with self.session() as s:
            row = s.get(Embedding, (photo_id, version))
            return None if row is None else np.frombuffer(row.vector, dtype=np.float32).copy()

    def intact_vector_of(self, photo_id: int, version: str, dim: int) -> np.ndarray | None:
        """A photo's stored vector of one model version; None when there is none or it is
        damaged (not ``dim`` floats)."""
        with self.session() as s:
            row = s.get(Embedding, (photo_id, version))
            if row is None or len(row.vector) != 4 * dim:
                return None
            return np.frombuffer(row.vector, dtype=np.float32)

    def delete_photos(self, s: Session, ids: list[int], keep_captions: bool = False) -> None:
        """Photos leave with their vectors. ``keep_captions``: their captions go to a photo of the
        same content still in the library, else are kept with the content hash."""
        if keep_captions:
            self._keep_captions(s, ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            s.execute(delete(Embedding).where(Embedding.photo_id.in_(chunk)))
            s.execute(delete(Caption).where(Caption.photo_id.in_(chunk)))
            s.execute(delete(Photo).where(Photo.id.in_(chunk)))
        if ids:
            self.bump_generation(s)

    def _keep_captions(self, s: Session, ids: list[int]) -> None:
        leaving, twins = set(ids), {}
        for i in range(0, len(ids), 500):
            rows = s.execute(select(Caption.text, Caption.source, Caption.created_at,
                                    Photo.content_hash)
                             .join(Photo, Photo.id == Caption.photo_id)
                             .where(Caption.photo_id.in_(ids[i : i + 500]),
                                    Photo.content_hash.is_not(None))
                             .order_by(Caption.id)).all()
            for text_, source, created, digest in rows:
                if digest not in twins:  # the same content, still in the library
                    same = s.scalars(select(Photo.id).where(
                        Photo.content_hash == digest, Photo.status == "ok").order_by(Photo.id))
                    twins[digest] = next((p for p in same if p not in leaving), None)
                if twins[digest] is not None:
                    self._attach(s, twins[digest], [(text_, source, created)])
                else:
                    s.add(KeptCaption(content_hash=digest, text=text_, source=source,
                                      created_at=created))
        s.flush()

    @staticmethod
    def _attach(s: Session, photo_id: int, captions: list[tuple[str, str, datetime]]) -> int:
        have = set(s.scalars(select(Caption.text).where(Caption.photo_id == photo_id)))
        added = 0
        for text_, source, created in captions:
            if text_ not in have:
                s.add(Caption(photo_id=photo_id, text=text_, source=source, created_at=created))
                have.add(text_)
                added += 1
        return added

    def restore_captions(self, s: Session, photo_id: int, content_hash: str) -> int:
        """Captions kept for this content go back onto the photo; returns how many."""
        kept = s.scalars(select(KeptCaption).where(KeptCaption.content_hash == content_hash)
                         .order_by(KeptCaption.id)).all()
        if not kept:
            return 0
        added = self._attach(s, photo_id, [(k.text, k.source, k.created_at) for k in kept])
        s.execute(delete(KeptCaption).where(KeptCaption.content_hash == content_hash))
        return added

    def mark_missing(self, s: Session, ids: list[int]) -> None:
        """Photos gone from their folder that may be found in another: hidden from search,
        kept with their captions and vectors."""
        for i in range(0, len(ids), 500):
            s.execute(update(Photo).where(Photo.id.in_(ids[i : i + 500])).values(status="missing"))
        if ids:
            self.bump_generation(s)

    # -- folders and photos ---------------------------------------------------------------------
    def folder_paths(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(Root.path).order_by(Root.path)))

    def paused_folder_paths(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(Root.path).where(Root.paused).order_by(Root.path)))

    def set_folder_paused(self, folder: str, paused: bool) -> bool:
        """Pause or resume a library folder; False when it is not one."""
        with self.session() as s:
            root = s.scalar(select(Root).where(Root.path == folder))
            if root is None:
                return False
            root.paused = paused
            return True

    def delete_folder(self, folder: str) -> list[int] | None:
        """Take a library folder out of the catalog with its photos, their vectors and captions
        (the photos of a folder inside it that was added on its own stay), in one transaction.
        Returns the ids of the photos that left; None when it is not a library folder."""
        with self.session() as s:
            root = s.scalar(select(Root).where(Root.path == folder))
            if root is None:
                return None
            prefix = folder.rstrip("/") + "/"
            ids = list(s.scalars(select(Photo.id).where(
                Photo.path.startswith(prefix, autoescape=True))))
            nested = s.scalars(select(Root.path).where(
                Root.path.startswith(prefix, autoescape=True))).all()
            if nested:  # photos of a folder added on its own stay with it
                keep = tuple(n.rstrip("/") + "/" for n in nested)
                ids = [i for i in ids if not s.get(Photo, i).path.startswith(keep)]
            self.delete_photos(s, ids)
            s.delete(root)
            return ids

    # Photo rows leave their session loaded (expire_on_commit=False): plain values to read.
    def photo(self, photo_id: int) -> Photo | None:
        with self.session() as s:
            return s.get(Photo, photo_id)

    def photo_by_path(self, path: str) -> Photo | None:
        with self.session() as s:
            return s.scalar(select(Photo).where(Photo.path == path))

    def photos_by_id(self, ids: list[int]) -> dict[int, Photo]:
        """The photos of these ids that are in the catalog (any status), by id."""
        with self.session() as s:
            return {p.id: p for p in s.scalars(select(Photo).where(Photo.id.in_(ids)))}

    def hit_rows(self, ids: list[int]
                 ) -> dict[int, tuple[str, datetime | None, int | None, int | None]]:
        """(path, date, width, height) of the photos of these ids in the catalog, by id: what a
        search result shows, read as plain rows (a page of results without building objects)."""
        if self.is_sqlite:  # every search reads these: a plain read, dates parsed here
            found: dict[int, tuple[str, datetime | None, int | None, int | None]] = {}
            for i in range(0, len(ids), 500):  # SQLite's limit on a statement's parameters
                part = ids[i : i + 500]
                for pid, path, date, width, height in self._rows(
                        "SELECT id, path, date, width, height FROM photos WHERE id IN ("
                        + ",".join("?" * len(part)) + ")", tuple(part)):
                    found[pid] = (path, _sqlite_datetime(date), width, height)
            return found
        with self.reading() as c:
            return {r[0]: tuple(r[1:]) for r in c.execute(
                select(Photo.id, Photo.path, Photo.date, Photo.width, Photo.height)
                .where(Photo.id.in_(ids)))}

    def newest_photos(self, offset: int = 0, limit: int | None = None
                      ) -> list[tuple[int, str, datetime | None, int | None, int | None]]:
        """(id, path, date, width, height) of the searchable photos, newest first (undated ones
        last, then by id, newest first), from ``offset``; at most ``limit`` of them."""
        q = (select(Photo.id, Photo.path, Photo.date, Photo.width, Photo.height)
             .where(Photo.status == "ok")
             .order_by(Photo.date.is_(None), Photo.date.desc(), Photo.id.desc())
             .offset(max(0, offset)))
        if limit is not None:
            q = q.limit(max(0, limit))
        with self.session() as s:
            return [tuple(r) for r in s.execute(q)]

    def searchable_photo_ids(self, under: str | None = None, date_from: datetime | None = None,
                             date_to: datetime | None = None) -> list[int]:
        """The ids of the searchable photos whose path starts with ``under`` (a folder with its
        trailing slash) and whose date lies from ``date_from`` to ``date_to``, both included;
        None: no limit on that side."""
        q = select(Photo.id).where(Photo.status == "ok")
        if under is not None:
            q = q.where(Photo.path.startswith(under, autoescape=True))
        if date_from is not None:
            q = q.where(Photo.date >= date_from)
        if date_to is not None:
            q = q.where(Photo.date <= date_to)
        with self.session() as s:
            return list(s.scalars(q))

    def status_counts(self, version: str) -> CatalogCounts:
        """What the catalog holds, with the vectors of one model version."""
        with self.session() as s:
            ok = s.scalar(select(func.count()).where(Photo.status == "ok"))
            emb = s.scalar(select(func.count()).select_from(Embedding)
                           .where(Embedding.model_version == version))
            skipped = [(p, r or "") for p, r in s.execute(
                select(Photo.path, Photo.reason).where(Photo.status == "skipped")
                .order_by(Photo.path))]
            caps = s.scalar(select(func.count()).select_from(Caption))
            missing = s.scalar(select(func.count()).where(Photo.status == "missing"))
            kept = s.scalar(select(func.count()).select_from(KeptCaption))
        return CatalogCounts(ok or 0, emb or 0, skipped, caps or 0, missing or 0, kept or 0)

    # -- captions -------------------------------------------------------------------------------
    def captioned_photo_rows(self) -> list[tuple[int, str, str | None, str]]:
        """(photo id, path, content hash, caption) of every caption of a searchable photo, by
        photo id and then in the order the captions were added."""
        with self.session() as s:
            return [tuple(r) for r in s.execute(
                select(Photo.id, Photo.path, Photo.content_hash, Caption.text)
                .join(Caption, Caption.photo_id == Photo.id)
                .where(Photo.status == "ok").order_by(Photo.id, Caption.id))]

    def captioned_photo_count(self) -> int:
        """How many searchable photos have at least one caption."""
        with self.session() as s:
            return s.scalar(select(func.count(func.distinct(Caption.photo_id)))
                            .join(Photo, Photo.id == Caption.photo_id)
                            .where(Photo.status == "ok")) or 0

    def captions_of(self, photo_id: int) -> list[str]:
        """A photo's captions, in the order they were added."""
        with self.session() as s:
            return list(s.scalars(select(Caption.text).where(Caption.photo_id == photo_id)
                                  .order_by(Caption.id)))

    def replace_captions(self, photo_id: int, wanted: list[str], source: str) -> bool:
        """``wanted`` (distinct texts) becomes the photo's captions: kept texts keep their row
        (and where they were imported from), others go, new ones are added with ``source``.
        False when there is no such photo."""
        with self.session() as s:
            if s.get(Photo, photo_id) is None:
                return False
            existing = s.scalars(select(Caption).where(Caption.photo_id == photo_id)).all()
            have = set()
            for cap in existing:
                if cap.text in wanted and cap.text not in have:
                    have.add(cap.text)
                else:
                    s.delete(cap)
            for t in wanted:
                if t not in have:
                    s.add(Caption(photo_id=photo_id, text=t, source=source))
            return True

    def remove_photos(self, ids: list[int]) -> None:
        """Photos a person took out of the library (an exclusion pattern): they leave with their
        vectors, in one transaction; their captions are kept for their return."""
        with self.session() as s:
            self.delete_photos(s, ids, keep_captions=True)

    def searchable_photo_paths(self) -> list[tuple[int, str]]:
        """(photo id, path) of every searchable photo."""
        with self.session() as s:
            return [tuple(r) for r in s.execute(
                select(Photo.id, Photo.path).where(Photo.status == "ok"))]

    def add_new_captions(self, captions: dict[int, list[str]], source: str) -> dict[int, int]:
        """Add each photo's captions that it does not have yet (a text given twice is added
        once), all in one transaction; returns how many were added to each photo."""
        added: dict[int, int] = {}
        with self.session() as s:
            existing: dict[int, set[str]] = {}
            for pid, text_ in s.execute(select(Caption.photo_id, Caption.text)
                                        .where(Caption.photo_id.in_(list(captions)))):
                existing.setdefault(pid, set()).add(text_)
            for pid, texts in captions.items():
                have = existing.setdefault(pid, set())
                added[pid] = 0
                for t in texts:
                    if t not in have:
                        s.add(Caption(photo_id=pid, text=t, source=source))
                        have.add(t)
                        added[pid] += 1
        return added

    # -- words --------------------------------------------------------------------------------------
    def _has_text_table(self) -> bool:
        if self.is_postgres:
            with self.session() as s:
                return catalog_pg.has_text_index(s)
        if not self.is_sqlite:
            return False
        with self.session() as s:
            return s.execute(text("SELECT 1 FROM sqlite_master WHERE name = :n"),
                             {"n": TEXT_TABLE}).first() is not None

    def photos_with_words(self, clauses: list[list[str]], limit: int | None = None,
                          rare: int | None = None, ranked: bool = True) -> list[int]:
        """The searchable photos whose captions, folder names or file name hold every word (or
        phrase: words with spaces, found in order) of at least one clause, best first (BM25, a
        caption's words weighing twice a file name's; in PostgreSQL ts_rank so weighted). Words
        are stemmed and case-folded; without a full-text index (another database) they are found
        anywhere in a caption or the path, as written, in photo id order. ``rare``: a clause
        more photos than this hold is left out (words that common say little about a photo, and
        ranking all their photos is slow). ``ranked=False``: in no particular order (a condition
        or an exclusion needs no order)."""
        clauses = [[w for w in c if w.strip()] for c in clauses]
        clauses = [c for c in clauses if c]
        if not clauses:
            return []
        if not self.has_text_index:
            return self._photos_with_words_like(clauses, limit)
        if self.is_postgres:
            with self.session() as s:
                return catalog_pg.photos_with_words(s, clauses, limit, rare, ranked)
        matches = ["(" + " AND ".join(_quoted(w) for w in c) + ")" for c in clauses]
        counts = "SELECT " + ", ".join(  # one statement: whether more than ``rare`` photos
            # hold each clause, counting no further than one more (a common word's thousands of
            # photos are not all counted)
            f"(SELECT count(*) FROM (SELECT 1 FROM {TEXT_TABLE} WHERE {TEXT_TABLE} MATCH ? "
            "LIMIT ?))" for _ in matches)
        sql = (f"SELECT rowid FROM {TEXT_TABLE} WHERE {TEXT_TABLE} MATCH ?"
               + (f" ORDER BY bm25({TEXT_TABLE}, 2.0, 1.0)" if ranked else "")
               + (" LIMIT ?" if limit else ""))
        # every search asks: plain reads
        if rare is not None:
            held = self._rows(counts, [v for m in matches for v in (m, rare + 1)],
                              refused_is_empty=True)
            matches = [m for m, n in zip(matches, held[0], strict=True) if n <= rare] \
                if held else []
        if not matches:
            return []
        return [r[0] for r in self._rows(sql, [" OR ".join(matches)] + ([limit] if limit else []),
                                         refused_is_empty=True)]

    def _photos_with_words_like(self, clauses: list[list[str]], limit: int | None) -> list[int]:
        def pattern(w: str) -> str:
            return "%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

        def has(w: str):
            return or_(Photo.path.ilike(pattern(w), escape="\\"),
                       exists().where(Caption.photo_id == Photo.id,
                                      Caption.text.ilike(pattern(w), escape="\\")))

        q = (select(Photo.id).where(Photo.status == "ok")
             .where(or_(*[and_(*[has(w) for w in c]) for c in clauses])).order_by(Photo.id))
        if limit:
            q = q.limit(limit)
        with self.session() as s:
            return list(s.scalars(q))

    # -- model versions -------------------------------------------------------------------------
    # Rows read here leave their session loaded (expire_on_commit=False): plain values to pass on.
    def model_rows(self) -> list[ModelRecord]:
        """Every model version, oldest first."""
        with self.session() as s:
            return list(s.scalars(select(ModelRecord).order_by(ModelRecord.created_at)))

    def model_row(self, version: str) -> ModelRecord | None:
        with self.session() as s:
            return s.get(ModelRecord, version)

    def active_model_row(self) -> ModelRecord | None:
        with self.session() as s:
            return s.scalar(select(ModelRecord).where(ModelRecord.active))

    def active_version(self) -> str | None:
        """The active model version's name (a plain read: every search checks it)."""
        if self.is_sqlite:
            rows = self._rows("SELECT version FROM models WHERE active LIMIT 1")
            return rows[0][0] if rows else None
        with self.reading() as c:
            return c.execute(select(ModelRecord.version).where(ModelRecord.active)).scalar()

    def add_model_row(self, version: str, *, family: str, parent: str | None, path: str | None,
                      config: dict, info: dict, active: bool = False) -> None:
        """Add a model version unless it is there already; ``active``: make it the active one in
        the same transaction."""
        with self.session() as s:
            rec = s.get(ModelRecord, version)
            if rec is None:
                rec = ModelRecord(version=version, family=family, parent=parent, path=path,
                                  config_json=json.dumps(config), info_json=json.dumps(info))
                s.add(rec)
            if active:
                self._only_active(s, rec)

    def set_active_model(self, version: str) -> None:
        with self.session() as s:
            rec = s.get(ModelRecord, version)
            if rec is None:
                raise LibraryError(f"no model {version!r} in this library")
            self._only_active(s, rec)

    @staticmethod
    def _only_active(s: Session, rec: ModelRecord) -> None:
        for other in s.scalars(select(ModelRecord).where(ModelRecord.active)):
            other.active = False
        s.flush()
        rec.active = True

    def delete_model_row(self, version: str) -> None:
        """A model version's row and every vector it made, in one transaction."""
        with self.session() as s:
            s.execute(delete(Embedding).where(Embedding.model_version == version))
            s.execute(delete(ModelRecord).where(ModelRecord.version == version))

    def close(self) -> None:
        self.engine.dispose()
