"""The catalog's named things: a person, a pet, "the red car", each a name over some photos.

The photos a person named are the truth (``name_photos``); the name's vector is derived from
those photos' embeddings, once per model version (``name_vectors``), and remembered with the
basis it was made from (which photos, and the catalog's vectors generation then): a photo leaving,
a photo embedded again or another model makes a stored vector stale, and it is made again. A model
version deleted takes its name vectors with it; a photo deleted leaves the name with the rest.

The tables are declared on the catalog's own ``Base``: a catalog opened by this version creates
them (``create_all`` on open, the path the catalog has for tables added without data changes),
and an older version leaves them alone. Every method is one short transaction; rows come back as
``NameRow`` values, never as ORM objects.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    delete,
    select,
)
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Mapped, Session, mapped_column

from .catalog import Base, Caption, Catalog, utcnow
from .errors import LibraryError

# 64-bit ids in other databases; SQLite's rowid alias must be declared INTEGER to count up.
ID = BigInteger().with_variant(Integer, "sqlite")
CAPTION_SOURCE = "name"  # the source of the captions a name added to its photos


class Name(Base):
    """A name a person gave to some photos, as typed; ``key`` is its case-folded form."""

    __tablename__ = "names"
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    # the name was added to its photos' captions (and is added to photos named later)
    in_captions: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class NamePhoto(Base):
    __tablename__ = "name_photos"
    name_id: Mapped[int] = mapped_column(ForeignKey("names.id", ondelete="CASCADE"),
                                         primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"),
                                          primary_key=True, index=True)


class NameVector(Base):
    """A name's vector for one model version, and what it was made from."""

    __tablename__ = "name_vectors"
    name_id: Mapped[int] = mapped_column(ForeignKey("names.id", ondelete="CASCADE"),
                                         primary_key=True)
    model_version: Mapped[str] = mapped_column(
        ForeignKey("models.version", ondelete="CASCADE"), primary_key=True)
    basis: Mapped[str] = mapped_column(String(64))
    photos: Mapped[int] = mapped_column(Integer)  # how many photos' vectors it was made from
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


TABLES = [Name.__table__, NamePhoto.__table__, NameVector.__table__]


@dataclass(frozen=True)
class NameRow:
    id: int
    name: str  # as the person typed it
    key: str  # case-folded: what a query's @name is compared with
    in_captions: bool
    photo_ids: tuple[int, ...]  # the photos named, in the catalog (any status)


class NameCatalog:
    """Every SQL statement about names, each named by what it is for."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        # a catalog opened before these tables were declared: made now (a read-only library:
        # names are read if there, else there are none)
        with suppress(DatabaseError):
            Base.metadata.create_all(catalog.engine, tables=TABLES)

    def _row(self, s: Session, name: Name) -> NameRow:
        ids = s.scalars(select(NamePhoto.photo_id).where(NamePhoto.name_id == name.id)
                        .order_by(NamePhoto.photo_id)).all()
        return NameRow(name.id, name.name, name.key, bool(name.in_captions), tuple(ids))

    def all(self) -> list[NameRow]:
        """Every name, alphabetically (by its case-folded form)."""
        try:
            with self.catalog.session() as s:
                return [self._row(s, n) for n in s.scalars(select(Name).order_by(Name.key))]
        except LibraryError:
            if self._tables_missing():
                return []
            raise

    def find(self, key: str) -> NameRow | None:
        try:
            with self.catalog.session() as s:
                n = s.scalar(select(Name).where(Name.key == key))
                return None if n is None else self._row(s, n)
        except LibraryError:
            if self._tables_missing():
                return None
            raise

    def _tables_missing(self) -> bool:
        with self.catalog.engine.connect() as c:
            return not self.catalog.engine.dialect.has_table(c, Name.__tablename__)

    def add(self, name: str, key: str, photo_ids: list[int], in_captions: bool) -> NameRow:
        """Name these photos (a new name, or more photos for one that exists); with
        ``in_captions`` (or a name already in its photos' captions) the name becomes a caption
        of each photo that lacks it. One transaction."""
        with self.catalog.session() as s:
            n = s.scalar(select(Name).where(Name.key == key))
            if n is None:
                n = Name(key=key, name=name, in_captions=in_captions)
                s.add(n)
                s.flush()
            elif in_captions:
                n.in_captions = True
            have = set(s.scalars(select(NamePhoto.photo_id).where(NamePhoto.name_id == n.id)))
            for pid in dict.fromkeys(photo_ids):
                if pid not in have:
                    s.add(NamePhoto(name_id=n.id, photo_id=pid))
            if n.in_captions:
                self._caption(s, n.name, sorted(have | set(photo_ids)))
            s.flush()
            return self._row(s, n)

    @staticmethod
    def _caption(s: Session, text: str, photo_ids: list[int]) -> None:
        for i in range(0, len(photo_ids), 500):
            chunk = photo_ids[i : i + 500]
            has = set(s.scalars(select(Caption.photo_id).where(
                Caption.photo_id.in_(chunk), Caption.text == text)))
            for pid in chunk:
                if pid not in has:
                    s.add(Caption(photo_id=pid, text=text, source=CAPTION_SOURCE))

    def rename(self, key: str, new_name: str, new_key: str) -> NameRow | None:
        """Give a name another spelling or another name; the captions it added follow. None when
        there is no such name; a LibraryError when another name is spelled ``new_key``."""
        with self.catalog.session() as s:
            n = s.scalar(select(Name).where(Name.key == key))
            if n is None:
                return None
            other = s.scalar(select(Name).where(Name.key == new_key))
            if other is not None and other.id != n.id:
                raise LibraryError(f"there is already a name @{other.name}: delete it first, or "
                                   "add these photos to it")
            ids = list(s.scalars(select(NamePhoto.photo_id).where(NamePhoto.name_id == n.id)))
            old = n.name
            n.name, n.key = new_name, new_key
            for i in range(0, len(ids), 500):
                for cap in s.scalars(select(Caption).where(
                        Caption.photo_id.in_(ids[i : i + 500]), Caption.text == old,
                        Caption.source == CAPTION_SOURCE)):
                    cap.text = new_name
            s.flush()
            return self._row(s, n)

    def delete(self, key: str) -> NameRow | None:
        """A name leaves with its vectors and the captions it added (the photos stay)."""
        with self.catalog.session() as s:
            n = s.scalar(select(Name).where(Name.key == key))
            if n is None:
                return None
            row = self._row(s, n)
            ids = list(row.photo_ids)
            for i in range(0, len(ids), 500):
                s.execute(delete(Caption).where(Caption.photo_id.in_(ids[i : i + 500]),
                                                Caption.text == n.name,
                                                Caption.source == CAPTION_SOURCE))
            s.execute(delete(NameVector).where(NameVector.name_id == n.id))
            s.execute(delete(NamePhoto).where(NamePhoto.name_id == n.id))
            s.delete(n)
            return row

    def stored_vector(self, name_id: int, version: str) -> tuple[str, int, np.ndarray] | None:
        """(basis, photos, vector) of a name for one model version, if one was stored."""
        with self.catalog.session() as s:
            row = s.get(NameVector, (name_id, version))
            if row is None:
                return None
            return row.basis, row.photos, np.frombuffer(row.vector, dtype=np.float32).copy()

    def store_vector(self, name_id: int, version: str, basis: str, photos: int,
                     vector: np.ndarray) -> None:
        with self.catalog.session() as s:
            row = s.get(NameVector, (name_id, version))
            data = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
            if row is None:
                s.add(NameVector(name_id=name_id, model_version=version, basis=basis,
                                 photos=photos, vector=data))
            else:
                row.basis, row.photos, row.vector, row.created_at = basis, photos, data, utcnow()

    def vector_versions(self, name_id: int) -> list[str]:
        """The model versions a vector of this name is stored for."""
        with self.catalog.session() as s:
            return list(s.scalars(select(NameVector.model_version)
                                  .where(NameVector.name_id == name_id)
                                  .order_by(NameVector.model_version)))
