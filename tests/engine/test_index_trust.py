"""The FAISS file is a cache that is verified, never trusted: a stamp ties it to this catalog
(library, model version, generation, count, a checksum of its ids and of the file), and anything
that does not match, or does not load, is rebuilt from the catalog's vectors. A long-lived
process checks its index again before it writes, so it never saves an index another process
has made stale."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest
from PIL import Image

from engine.library import Library
from tests.conftest import TINY_MODEL


def _photos(folder, n: int, seed: int) -> list:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append(folder / f"{seed}-{i:02d}.png")
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(out[-1])
    return out


def _open(path) -> Library:
    return Library.open(path, device="cpu", default_model=TINY_MODEL)


def _finds_itself(lib: Library, photos: list) -> bool:
    return all(lib.search(image=p, k=1)[0].path == str(p) for p in photos)


def test_an_index_copied_in_from_another_library_is_not_used(tmp_path):
    mine, theirs = _open(tmp_path / "mine"), _open(tmp_path / "theirs")
    my_photos = _photos(tmp_path / "a", 6, seed=1)
    mine.add_folders([tmp_path / "a"])
    theirs.add_folders([_photos(tmp_path / "b", 6, seed=2)[0].parent])
    # Same model, same generation, same count and ids: only the vectors differ.
    assert mine.catalog.generation() == theirs.catalog.generation()
    mine.close()
    theirs.close()
    for f in (tmp_path / "theirs" / "index").iterdir():
        shutil.copy2(f, tmp_path / "mine" / "index" / f.name)
    lib = _open(tmp_path / "mine")
    assert len(lib.index) == 6 and _finds_itself(lib, my_photos)
    lib.close()


def _faiss_file(root):
    return next((root / "index").glob("*.faiss"))


@pytest.mark.parametrize("damage", ["last id", "a vector", "header", "truncated"])
def test_a_damaged_index_file_is_rebuilt_from_the_catalog(tmp_path, damage):
    photos = _photos(tmp_path / "a", 8, seed=3)
    lib = _open(tmp_path / "lib")
    lib.add_folders([tmp_path / "a"])
    lib.close()
    f = _faiss_file(tmp_path / "lib")
    data = bytearray(f.read_bytes())
    if damage == "last id":  # the id map ends the file: the last photo's id becomes another's
        data[-8:] = np.int64(1).tobytes()
    elif damage == "a vector":
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    elif damage == "header":  # a huge vector count
        data[8:16] = np.int64(1 << 60).tobytes()
    else:
        data = data[: len(data) // 2]
    f.write_bytes(bytes(data))
    lib = _open(tmp_path / "lib")
    assert len(lib.index) == 8 and _finds_itself(lib, photos)
    lib.close()


def test_a_malformed_embedding_row_is_skipped_then_embedded_again(tmp_path):
    photos = _photos(tmp_path / "a", 6, seed=4)
    lib = _open(tmp_path / "lib")
    lib.add_folders([tmp_path / "a"])
    lib.close()
    with sqlite3.connect(tmp_path / "lib" / "catalog.db") as db:
        pid = db.execute("SELECT id FROM photos WHERE path = ?", (str(photos[2]),)).fetchone()[0]
        db.execute("UPDATE embeddings SET vector = ? WHERE photo_id = ?", (b"\x01\x02\x03", pid))
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'vectors_generation'")
    lib = _open(tmp_path / "lib")
    others = [p for p in photos if p != photos[2]]
    assert len(lib.index) == 5 and _finds_itself(lib, others)  # search goes on without it
    hits = lib.search(image=photos[2], k=6)  # its file is read again for the query
    assert sorted(h.path for h in hits) == sorted(map(str, others))
    report = lib.add_folders([tmp_path / "a"])
    assert report.embedded == 1
    assert len(lib.index) == 6 and _finds_itself(lib, photos)
    lib.close()


def test_a_long_lived_process_never_saves_an_index_another_process_made_stale(tmp_path):
    """A watcher indexes folder A; meanwhile another process indexes folder B; the watcher's
    next pass must not write its old index (without B) over the new one."""
    a = _photos(tmp_path / "a", 5, seed=5)
    b = _photos(tmp_path / "b", 5, seed=6)
    watcher = _open(tmp_path / "lib")
    watcher.add_folders([tmp_path / "a"])
    assert len(watcher.index) == 5
    other = _open(tmp_path / "lib")  # its own lock file handle: another process, in effect
    other.add_folders([tmp_path / "b"])
    other.close()
    with watcher.writer.hold("indexing changes in watched folders"):
        watcher.add_folders([tmp_path / "a"])
    assert len(watcher.index) == 10 and _finds_itself(watcher, a + b)
    watcher.close()
    with sqlite3.connect(tmp_path / "lib" / "catalog.db") as db:  # the saved file holds B too
        gen = int(db.execute("SELECT value FROM meta WHERE key = 'vectors_generation'")
                  .fetchone()[0])
    import faiss

    assert faiss.read_index(str(_faiss_file(tmp_path / "lib"))).ntotal == 10
    later = _open(tmp_path / "lib")
    assert later.catalog.generation() == gen and len(later.index) == 10
    later.close()


def test_removing_a_folder_in_a_long_lived_process_keeps_another_process_s_photos(tmp_path):
    _photos(tmp_path / "a", 4, seed=7)
    b = _photos(tmp_path / "b", 4, seed=8)
    app = _open(tmp_path / "lib")
    app.add_folders([tmp_path / "a"])
    assert len(app.index) == 4
    other = _open(tmp_path / "lib")
    other.add_folders([tmp_path / "b"])
    other.close()
    assert app.remove_folder(tmp_path / "a") == 4
    assert len(app.index) == 4 and _finds_itself(app, b)
    app.close()
