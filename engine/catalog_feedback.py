"""The catalog's feedback marks: a photo marked right or wrong for a query the person typed.

A right mark is also a caption of the photo (the query's words, source ``feedback``), so the
next fine-tune learns the pair like any caption, and the words find the photo at once. A wrong
mark is a hard negative: the next fine-tune puts the photo among the photos the query's caption
is pushed away from. Marks are kept by the query's folded form (case and spaces), one per photo
and query; marking again replaces the mark, clearing removes it and the caption it added.

The table is declared on the catalog's own ``Base`` and made when a catalog is opened, as the
names' tables are. Every method is one short transaction returning plain values.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    select,
)
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Mapped, Session, mapped_column

from .catalog import Base, Caption, Catalog, Photo, utcnow
from .errors import LibraryError

ID = BigInteger().with_variant(Integer, "sqlite")
CAPTION_SOURCE = "feedback"  # the source of the captions a right mark added


class Mark(Base):
    __tablename__ = "feedback_marks"
    __table_args__ = (UniqueConstraint("query_key", "photo_id"),)
    id: Mapped[int] = mapped_column(ID, primary_key=True)
    query_key: Mapped[str] = mapped_column(String(512), index=True)
    query: Mapped[str] = mapped_column(Text)  # as typed
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"),
                                          index=True)
    right: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


TABLES = [Mark.__table__]


@dataclass(frozen=True)
class MarkRow:
    query: str
    photo_id: int
    path: str
    right: bool


class FeedbackCatalog:
    """Every SQL statement about feedback marks, each named by what it is for."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        with suppress(DatabaseError):  # (a read-only library: marks are read if there)
            Base.metadata.create_all(catalog.engine, tables=TABLES)

    def _tables_missing(self) -> bool:
        with self.catalog.engine.connect() as c:
            return not self.catalog.engine.dialect.has_table(c, Mark.__tablename__)

    def set(self, query: str, key: str, photo_id: int, right: bool | None) -> None:
        """Mark a photo right or wrong for a query, or (None) clear its mark."""
        with self.catalog.session() as s:
            if s.get(Photo, photo_id) is None:
                raise LibraryError(f"no photo with id {photo_id} in the library")
            mark = s.scalar(select(Mark).where(Mark.query_key == key,
                                               Mark.photo_id == photo_id))
            old = mark.query if mark is not None and mark.right else None  # its caption
            if right is None:
                if mark is not None:
                    s.delete(mark)
            elif mark is None:
                s.add(Mark(query_key=key, query=query, photo_id=photo_id, right=right))
            else:
                mark.right, mark.query = right, query
            if old is not None and (right is not True or old != query):
                s.execute(delete(Caption).where(Caption.photo_id == photo_id,
                                                Caption.source == CAPTION_SOURCE,
                                                Caption.text == old))
            if right is True:
                self._caption(s, query, photo_id)

    @staticmethod
    def _caption(s: Session, text: str, photo_id: int) -> None:
        have = s.scalar(select(Caption.id).where(Caption.photo_id == photo_id,
                                                 Caption.text == text))
        if have is None:
            s.add(Caption(photo_id=photo_id, text=text, source=CAPTION_SOURCE))

    def of_query(self, key: str) -> tuple[list[int], list[int]]:
        """(photos marked right, photos marked wrong) for one query, oldest mark first."""
        try:
            with self.catalog.reading() as c:  # every search asks: a plain read
                rows = c.execute(select(Mark.photo_id, Mark.right).where(Mark.query_key == key)
                                 .order_by(Mark.id)).all()
        except LibraryError:
            if self._tables_missing():
                return [], []
            raise
        return [p for p, r in rows if r], [p for p, r in rows if not r]

    def all(self) -> list[MarkRow]:
        try:
            with self.catalog.session() as s:
                rows = s.execute(select(Mark.query, Mark.photo_id, Photo.path, Mark.right)
                                 .join(Photo, Photo.id == Mark.photo_id)
                                 .order_by(Mark.query_key, Mark.id)).all()
        except LibraryError:
            if self._tables_missing():
                return []
            raise
        return [MarkRow(q, p, path, bool(r)) for q, p, path, r in rows]

    def wrong_by_query(self) -> dict[str, list[int]]:
        """Every query with photos marked wrong for it: the hard negatives of training, by
        the query as typed (the text its right marks' captions carry)."""
        out: dict[str, list[int]] = {}
        for row in self.all():
            if not row.right:
                out.setdefault(row.query, []).append(row.photo_id)
        return out

    def wrong_photos(self) -> list[tuple[str, int, str, str | None]]:
        """(query as typed, photo id, path, content hash) of every photo marked wrong."""
        try:
            with self.catalog.session() as s:
                rows = s.execute(select(Mark.query, Mark.photo_id, Photo.path,
                                        Photo.content_hash)
                                 .join(Photo, Photo.id == Mark.photo_id)
                                 .where(Mark.right.is_(False)).order_by(Mark.id)).all()
        except LibraryError:
            if self._tables_missing():
                return []
            raise
        return [tuple(r) for r in rows]

    def clear(self, key: str) -> int:
        """Every mark of a query, with the captions its right marks added; how many marks."""
        with self.catalog.session() as s:
            marks = list(s.scalars(select(Mark).where(Mark.query_key == key)))
            for m in marks:
                if m.right:
                    s.execute(delete(Caption).where(Caption.photo_id == m.photo_id,
                                                    Caption.source == CAPTION_SOURCE,
                                                    Caption.text == m.query))
                s.delete(m)
            return len(marks)
