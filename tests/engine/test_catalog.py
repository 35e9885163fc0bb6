"""Catalog schema: an older catalog is migrated with a backup and keeps its data; a newer one is
refused; a second process cannot change a library while another one is."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from engine.catalog import SCHEMA_VERSION, Catalog
from engine.errors import LibraryError
from engine.library import Library
from tests.conftest import TINY_MODEL


def _make_v1(db) -> None:
    """A catalog exactly as schema 1 wrote it, with a photo and a caption in it."""
    con = sqlite3.connect(db)
    con.executescript(textwrap.dedent("""
        CREATE TABLE meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE roots (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE,
                            added_at DATETIME NOT NULL, enabled BOOLEAN NOT NULL);
        CREATE TABLE photos (id INTEGER PRIMARY KEY, root_id INTEGER REFERENCES roots(id),
            path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
            content_hash VARCHAR(64), width INTEGER, height INTEGER, taken_at DATETIME,
            date DATETIME, status VARCHAR(16) NOT NULL, reason TEXT,
            added_at DATETIME NOT NULL, updated_at DATETIME NOT NULL);
        CREATE TABLE captions (id INTEGER PRIMARY KEY, photo_id INTEGER NOT NULL
            REFERENCES photos(id) ON DELETE CASCADE, text TEXT NOT NULL,
            source VARCHAR(32) NOT NULL, created_at DATETIME NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1'), ('vectors_generation', '3');
        INSERT INTO roots VALUES (1, '/photos', '2024-01-01', 1);
        INSERT INTO photos VALUES (1, 1, '/photos/a.jpg', 10, 20, 'h', 4, 3, NULL,
            '2024-01-01', 'ok', NULL, '2024-01-01', '2024-01-01');
        INSERT INTO captions VALUES (1, 1, 'Mia''s first day at school', 'user', '2024-01-01');
    """))
    con.commit()
    con.close()


def test_old_catalog_is_migrated_with_a_backup_and_keeps_its_data(tmp_path):
    db = tmp_path / "catalog.db"
    _make_v1(db)
    cat = Catalog(f"sqlite:///{db}")
    assert cat.get_meta("schema_version") == str(SCHEMA_VERSION)
    backup = tmp_path / "catalog.db.schema1.bak"
    assert backup.is_file()
    old = sqlite3.connect(backup)
    assert old.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)
    cat.close()
    lib = Library.open(tmp_path, device="cpu", default_model=TINY_MODEL)
    assert lib.captions(1) == ["Mia's first day at school"]
    assert lib.folders() == ["/photos"] and lib.paused_folders() == []
    lib.set_folder_paused("/photos", True)
    assert lib.paused_folders() == ["/photos"]
    lib.close()


def test_catalog_from_a_newer_chikaku_is_refused(tmp_path):
    db = tmp_path / "catalog.db"
    Catalog(f"sqlite:///{db}").close()
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(LibraryError, match="newer Chikaku"):
        Catalog(f"sqlite:///{db}")


@pytest.mark.usefixtures("catalog_url")  # a shared catalog: PostgreSQL's advisory lock
def test_second_process_cannot_change_the_library_while_one_does(tmp_path, photos):
    lib = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    code = textwrap.dedent(f"""
        from engine.library import Library
        from engine.errors import LibraryError
        lib = Library.open({str(tmp_path / 'lib')!r}, device="cpu")
        try:
            lib.add_folders([{str(photos)!r}])
        except LibraryError as e:
            print("REFUSED:", e)
        else:
            print("INDEXED")
    """)
    with lib.writer.hold("indexing"):
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120)
    assert "REFUSED: another Chikaku process is changing this library (indexing, pid" \
        in run.stdout, run.stdout + run.stderr
    assert lib.status().photos == 0  # nothing half-done
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert "INDEXED" in run.stdout  # once the first is done, the second goes ahead
    assert lib.status().photos == 12
    assert len(lib.search(image=sorted(photos.iterdir())[0], k=3)) == 3  # it reads along


def test_removing_a_folder_takes_its_photos_out_and_leaves_files(tiny_lib, photos):
    tiny_lib.add_folders([photos])
    assert tiny_lib.remove_folder(photos) == 12
    assert tiny_lib.status().photos == 0 and tiny_lib.folders() == []
    assert len(list(photos.iterdir())) == 12


def test_two_writers_of_a_new_meta_key_do_not_fail(tmp_path, monkeypatch):
    """Two first searches calibrating one model at once both find its key absent and insert it:
    the second becomes an update instead of an error (it failed a search once)."""
    from engine.catalog import Catalog, Meta

    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    cat.put_meta("calibration:v1", "first")

    def stale_read(self, s, key, value):  # as a thread that read before the other's commit
        s.add(Meta(key=key, value=value))

    monkeypatch.setattr(Catalog, "set_meta", stale_read)
    cat.put_meta("calibration:v1", "second")
    assert cat.get_meta("calibration:v1") == "second"
    cat.close()
