"""A catalog kept in PostgreSQL (CHIKAKU_DATABASE_URL): today's file times fit, an older catalog
is upgraded in place, batches of photos go in by COPY all or nothing, and writers on two
machines sharing the catalog exclude each other, also when one of them is killed. The same
batches go into SQLite by executemany."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from engine.catalog import SCHEMA_VERSION, Catalog
from engine.catalog_photos import PhotoCatalog
from engine.errors import LibraryError
from engine.library import Library
from engine.lock import WriterLock
from tests.conftest import TINY_MODEL

psycopg = pytest.importorskip("psycopg", reason="the cluster extra (psycopg) is not installed")
ROOT = Path(__file__).resolve().parents[2]
BIG = 6 << 30  # a 6 GB video: no 32-bit column holds its size


def _sql(url: str, *statements: str) -> list[tuple]:
    """Statements run with plain psycopg (not through the code under test); the last one's rows."""
    with psycopg.connect(make_url(url).set(drivername="postgresql")
                         .render_as_string(hide_password=False), autocommit=True) as conn:
        rows: list[tuple] = []
        for st in statements:
            cur = conn.execute(st)
            rows = cur.fetchall() if cur.description else []
        return rows


def _folder(tmp_path: Path, n: int = 4) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (40, 40), (60 * i, 200 - 40 * i, 90)).save(folder / f"beach_{i}.png")
    return folder


def test_todays_file_times_and_large_files_fit(postgres):
    cat = Catalog(postgres.new_database())
    now = time.time_ns()
    added = PhotoCatalog(cat, "v1").add_many(
        [("/p/film.mp4", None, BIG, now, "h", 1920, 1080, None, None, None)])
    photo = cat.photo(added.ids["/p/film.mp4"])
    assert (photo.size, photo.mtime_ns) == (BIG, now)
    cat.close()


def test_an_older_postgresql_catalog_is_widened_and_gets_its_word_index(postgres):
    """Schema 3 in PostgreSQL: 32-bit size and mtime, no words table. Opening upgrades it in
    place and keeps its photos and captions."""
    url = postgres.new_database()
    cat = Catalog(url)
    photos = PhotoCatalog(cat, "v1")
    root = photos.register_folders(["/lib"])["/lib"]
    pid = photos.add_many([("/lib/Yorkshire/a.jpg", root, 10, 20, "h", 4, 3, None, None,
                            None)]).ids["/lib/Yorkshire/a.jpg"]
    cat.add_new_captions({pid: ["Mia on her first bike"]}, "user")
    cat.close()
    _sql(url, "DROP TABLE photo_text", "DROP TRIGGER photo_text_photos ON photos",
         "DROP TRIGGER photo_text_new_photos ON photos",
         "DROP TRIGGER photo_text_captions ON captions",
         "ALTER TABLE photos ALTER COLUMN size TYPE INTEGER, "
         "ALTER COLUMN mtime_ns TYPE INTEGER",
         "UPDATE meta SET value = '3' WHERE key = 'schema_version'")

    cat = Catalog(url)
    assert cat.get_meta("schema_version") == str(SCHEMA_VERSION) == "4"
    assert _sql(url, "SELECT column_name, data_type FROM information_schema.columns WHERE "
                "table_name = 'photos' AND column_name IN ('size', 'mtime_ns') "
                "ORDER BY column_name") == [("mtime_ns", "bigint"), ("size", "bigint")]
    assert cat.captions_of(pid) == ["Mia on her first bike"]
    assert cat.has_text_index
    assert cat.photos_with_words([["bikes"]]) == [pid]  # stemmed, from its caption
    assert cat.photos_with_words([["yorkshire"]]) == [pid]  # from its folder's name
    PhotoCatalog(cat, "v1").move(pid, "/lib/b.jpg", BIG, time.time_ns(), root)
    assert cat.photo(pid).size == BIG
    cat.close()


def test_a_sqlite_catalog_of_schema_3_opens_without_a_copy(tmp_path):
    """Nothing changes in a SQLite file from schema 3 to 4 (its integers are 64-bit already),
    so no backup copy is made; the photos stay."""
    db = tmp_path / "catalog.db"
    cat = Catalog(f"sqlite:///{db}")
    PhotoCatalog(cat, "v1").add_many([("/p/a.jpg", None, BIG, time.time_ns(), "h", 4, 3, None,
                                       None, None)])
    cat.close()
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    cat = Catalog(f"sqlite:///{db}")
    assert cat.get_meta("schema_version") == "4"
    assert cat.photo_by_path("/p/a.jpg").size == BIG
    assert list(tmp_path.glob("*.bak")) == []
    cat.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_catalog(request, tmp_path):
    url = (f"sqlite:///{tmp_path / 'catalog.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres").new_database())
    cat = Catalog(url)
    yield cat
    cat.close()


def _rows(n: int, start: int = 0, root: int | None = None) -> list[tuple]:
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, start + n):
        vec = rng.standard_normal(8).astype(np.float32)
        vec /= np.linalg.norm(vec)
        name = "beach_party" if i == 7 else f"img_{i:04d}"
        out.append((f"/lib/{name}.jpg", root, 1000 + i, time.time_ns(), f"hash{i}", 64, 48,
                    None, datetime(2024, 5, 1 + i % 28), vec.tobytes()))
    return out


def test_a_batch_goes_in_once_with_its_vectors_all_or_nothing(any_catalog):
    cat = any_catalog
    photos = PhotoCatalog(cat, "v1")
    root = photos.register_folders(["/lib"])["/lib"]
    rows = _rows(50, root=root)
    before = cat.generation()
    added = photos.add_many(rows)
    assert len(added.ids) == 50 and added.present == 0
    assert cat.generation() == before + 1  # the index knows to rebuild
    ids, vecs = cat.vectors("v1", 8)
    assert len(ids) == 50
    by_path = dict(zip([r[0] for r in rows], [np.frombuffer(r[-1], np.float32) for r in rows],
                       strict=True))
    for pid, vec in zip(ids.tolist(), vecs, strict=True):
        assert np.array_equal(vec, by_path[cat.photo(pid).path])
    assert cat.photos_with_words([["beach"]]) == [added.ids["/lib/beach_party.jpg"]]

    again = photos.add_many(rows + _rows(1, start=50, root=root))  # a shard given twice
    assert len(again.ids) == 1 and again.present == 50
    assert cat.status_counts("v1").photos == 51

    bad = _rows(5, start=100, root=root)
    bad[-1] = (None,) + bad[-1][1:]  # a photo without a path, after four good ones
    with pytest.raises(IntegrityError):
        photos.add_many(bad)
    with pytest.raises(LibraryError, match="has 3 values"):
        photos.add_many(_rows(2, start=200) + [("/lib/x.jpg", None, 1)])
    counts = cat.status_counts("v1")
    assert (counts.photos, counts.embedded) == (51, 51)  # nothing of either batch went in


def test_captions_kept_for_a_content_come_back_with_a_batch(any_catalog):
    cat = any_catalog
    photos = PhotoCatalog(cat, "v1")
    first = photos.add_many(_rows(1))
    pid = next(iter(first.ids.values()))
    cat.add_new_captions({pid: ["our old house"]}, "user")
    cat.remove_photos([pid])
    moved = [("/elsewhere/house.jpg",) + _rows(1)[0][1:]]  # the same content, at a new path
    back = photos.add_many(moved)
    assert back.captions_restored == 1
    assert cat.captions_of(back.ids["/elsewhere/house.jpg"]) == ["our old house"]


def test_writers_on_two_machines_sharing_a_catalog_exclude_each_other(postgres, tmp_path):
    """Two library folders (two machines) with one PostgreSQL catalog: while one indexes, the
    other is refused, told who holds it; then it goes ahead, and each sees the other's work."""
    url = postgres.new_database()
    folder = _folder(tmp_path)
    here = Library.open(tmp_path / "here", device="cpu", default_model=TINY_MODEL,
                        database_url=url)
    there = Library.open(tmp_path / "there", device="cpu", default_model=TINY_MODEL,
                         database_url=url)
    try:
        with here.writer.hold("indexing"), pytest.raises(
                LibraryError, match=r"another Chikaku process is changing this library "
                                    r"\(indexing, pid \d+ on .+\); try again"):
            there.add_folders([folder])
        assert there.status().photos == 0
        assert there.add_folders([folder]).added == 4
        assert here.status().photos == 4
        assert here.search(image=folder / "beach_2.png", k=1)[0].path == str(folder /
                                                                              "beach_2.png")
    finally:
        here.close()
        there.close()


_HOLD = """
import sys
from engine.lock import WriterLock
lock = WriterLock(sys.argv[1], sys.argv[2])
with lock.hold("training"):
    print("HELD", flush=True)
    sys.stdin.readline()
"""


def test_a_killed_writer_lets_go_of_the_shared_lock(postgres, tmp_path):
    url = postgres.new_database()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_HOLD),
                               str(tmp_path / "a.lock"), url], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    other = WriterLock(tmp_path / "b.lock", url)  # another machine: another lock file
    try:
        assert holder.stdout.readline().strip() == "HELD"
        with pytest.raises(LibraryError, match=rf"\(training, pid {holder.pid} on "), \
                other.hold("indexing"):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=60)
    with other.hold("indexing"):  # the server ended the dead writer's session, and its lock
        assert other.busy


def test_an_unreachable_server_is_named_in_the_message(postgres, tmp_path):
    url = postgres.url("no_such_database")
    with pytest.raises(LibraryError, match="cannot open the library lock in the catalog "
                                           "database .*no_such_database"), \
            WriterLock(tmp_path / "w.lock", url).hold("indexing"):
        pass


def test_vectors_of_a_new_model_version_go_in_as_a_batch(any_catalog):
    """Another model version's vectors for photos the catalog has (a re-embedding done
    elsewhere): added or replaced together, or, with one photo unknown, not at all."""
    cat = any_catalog
    added = PhotoCatalog(cat, "v1").add_many(_rows(6))
    ids = sorted(added.ids.values())
    v2 = PhotoCatalog(cat, "v2")
    first = {pid: np.full(8, i, np.float32) for i, pid in enumerate(ids)}
    assert v2.put_vectors([(pid, v.tobytes()) for pid, v in first.items()]) == 6
    again = np.full(8, 9, np.float32)
    v2.put_vectors([(ids[0], np.zeros(8, np.float32).tobytes()), (ids[0], again.tobytes())])
    got_ids, got = cat.vectors("v2", 8)
    assert got_ids.tolist() == ids
    assert np.array_equal(got[0], again)  # replaced, by the last of the two
    assert all(np.array_equal(got[i], first[pid]) for i, pid in enumerate(ids) if i)
    before = cat.generation()
    with pytest.raises(IntegrityError):
        v2.put_vectors([(ids[1], again.tobytes()), (max(ids) + 1000, again.tobytes())])
    assert np.array_equal(cat.vectors("v2", 8)[1][1], first[ids[1]])  # nothing was stored
    assert cat.generation() == before
    assert cat.status_counts("v1").embedded == 6  # the first version's vectors stay


def test_a_path_given_twice_in_a_batch_is_added_once_as_first_given(any_catalog):
    cat = any_catalog
    one, two = _rows(1, start=0)[0], _rows(1, start=1)[0]
    twice = (one[0],) + two[1:]  # the same path, another size and vector
    added = PhotoCatalog(cat, "v1").add_many([one, twice])
    assert list(added.ids) == [one[0]] and added.present == 1
    pid = added.ids[one[0]]
    assert cat.photo(pid).size == one[2]
    assert cat.vector_of(pid, "v1").tobytes() == one[-1]
