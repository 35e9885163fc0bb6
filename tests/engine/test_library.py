"""Incremental indexing, moves, deletions, restarts and combined queries (tiny model)."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from engine.errors import Cancelled, LibraryError, QueryError
from engine.library import Library
from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.usefixtures("catalog_url")  # each test on SQLite and on PostgreSQL


def _names(hits):
    return [h.path.rsplit("/", 1)[1] for h in hits]


def test_second_run_reembeds_nothing(tiny_lib, photos):
    first = tiny_lib.add_folders([photos])
    assert (first.added, first.embedded) == (12, 12)
    second = tiny_lib.add_folders([photos])
    assert (second.added, second.embedded, second.unchanged) == (0, 0, 12)


def test_moved_file_keeps_its_vector_id_and_captions(tiny_lib, photos):
    tiny_lib.add_folders([photos])
    name = sorted(p.name for p in photos.iterdir())[3]
    before = tiny_lib.photo_by_path(photos / name)
    tiny_lib.set_captions(before.id, ["grandpa's boat at Lake Biwa"])
    vector = tiny_lib.catalog.vector_of(before.id, tiny_lib.model.version)

    (photos / "2019" / "summer").mkdir(parents=True)
    shutil.move(photos / name, photos / "2019" / "summer" / "renamed.jpg")
    report = tiny_lib.add_folders([photos])

    assert (report.moved, report.embedded, report.removed) == (1, 0, 0)
    after = tiny_lib.photo_by_path(photos / "2019" / "summer" / "renamed.jpg")
    assert after.id == before.id
    assert tiny_lib.captions(after.id) == ["grandpa's boat at Lake Biwa"]
    assert np.array_equal(tiny_lib.catalog.vector_of(after.id, tiny_lib.model.version), vector)
    hit = tiny_lib.search(image=photos / "2019" / "summer" / "renamed.jpg", k=1)[0]
    assert hit.path.endswith("summer/renamed.jpg")


def test_deleted_file_leaves_the_results(tiny_lib, photos):
    tiny_lib.add_folders([photos])
    victim = sorted(photos.iterdir())[5]
    keep = victim.read_bytes()
    victim.unlink()
    report = tiny_lib.add_folders([photos])
    assert report.removed == 1
    query = photos.parent / "query.jpg"
    query.write_bytes(keep)
    paths = [h.path for h in tiny_lib.search(image=query, k=20)]
    assert str(victim) not in paths and len(paths) == 11
    assert tiny_lib.status().photos == 11


def test_changed_file_is_embedded_again(tiny_lib, photos):
    tiny_lib.add_folders([photos])
    a, b = sorted(photos.iterdir())[:2]
    shutil.copyfile(b, a)  # a now shows what b shows
    report = tiny_lib.add_folders([photos])
    assert (report.updated, report.reused) == (1, 1)  # identical content: vector reused
    top2 = _names(tiny_lib.search(image=b, k=2))
    assert set(top2) == {a.name, b.name}


def test_index_survives_a_restart_and_is_rebuilt_when_deleted(tmp_path, photos):
    lib = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    lib.add_folders([photos])
    query = sorted(photos.iterdir())[7]
    expected = [(h.photo_id, round(h.score, 5)) for h in lib.search(image=query, k=5)]
    lib.close()

    again = Library.open(tmp_path / "lib", device="cpu")
    assert again.status().photos == 12
    assert [(h.photo_id, round(h.score, 5)) for h in again.search(image=query, k=5)] == expected
    again.close()

    for f in (tmp_path / "lib" / "index").iterdir():
        f.unlink()
    rebuilt = Library.open(tmp_path / "lib", device="cpu")
    assert [(h.photo_id, round(h.score, 5)) for h in rebuilt.search(image=query, k=5)] == expected
    assert any((tmp_path / "lib" / "index").glob("*.faiss"))


def test_stale_index_file_is_rebuilt_from_the_catalog(tmp_path, photos):
    lib = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    lib.add_folders([photos])
    index_dir = tmp_path / "lib" / "index"
    old = {f.name: f.read_bytes() for f in index_dir.iterdir()}
    victim = sorted(photos.iterdir())[0]
    victim.unlink()
    lib.add_folders([photos])
    lib.close()
    for name, data in old.items():  # an old index, as after a crash before the save
        (index_dir / name).write_bytes(data)
    again = Library.open(tmp_path / "lib", device="cpu")
    assert len(again.index) == 11
    assert str(victim) not in [h.path for h in again.search(image=sorted(photos.iterdir())[0])]


def test_cancelled_run_keeps_finished_work_and_resumes(tmp_path, photos):
    from engine.config import IndexingConfig, LibraryConfig

    cfg = LibraryConfig(root=tmp_path / "lib", device="cpu",
                        indexing=IndexingConfig(batch_size=4, decode_workers=1))
    lib = Library(cfg, default_model=TINY_MODEL)
    cancel = threading.Event()

    def progress(p):
        if p.kind == "indexing" and p.done >= 4:
            cancel.set()

    with pytest.raises(Cancelled):
        lib.add_folders([photos], progress=progress, cancel=cancel)
    done = lib.status().photos
    assert 4 <= done < 12
    resumed = lib.add_folders([photos])
    assert resumed.embedded == 12 - done and resumed.unchanged == done
    assert lib.status().photos == 12


def test_combined_query_ranks_as_its_terms_say(tiny_lib, photos):
    tiny_lib.add_folders([photos])
    a, b, c = sorted(photos.iterdir())[:3]
    assert _names(tiny_lib.search(f"{a} + 3*{b}", k=1)) == [b.name]
    assert _names(tiny_lib.search(f"3*{a} + {b}", k=1)) == [a.name]
    # The score of each hit is the cosine with the normalised weighted sum of the terms.
    va, vb, vc = (tiny_lib.catalog.vector_of(tiny_lib.photo_by_path(p).id,
                                             tiny_lib.model.version) for p in (a, b, c))
    q = va + 0.5 * vb - vc
    q /= np.linalg.norm(q)
    for h in tiny_lib.search(f"{a} + 0.5*{b} - 1*{c}", k=12):  # a written weight subtracts
        v = tiny_lib.catalog.vector_of(h.photo_id, tiny_lib.model.version)
        assert h.score == pytest.approx(float(v @ q), abs=1e-5)
    # a minus with no weight excludes: the photo itself is never among the results
    assert c.name not in _names(tiny_lib.search(f"{a} - {c}", k=12))
    assert c.name in _names(tiny_lib.search(f"{a} - 1*{c}", k=12))


def test_folder_and_date_filters(tiny_lib, photos):
    import os
    from datetime import datetime

    sub = photos / "2020"
    sub.mkdir()
    moved = sorted(photos.glob("*.jpg"))[:4]
    for p in moved:
        shutil.move(p, sub / p.name)
        os.utime(sub / p.name, (datetime(2020, 5, 1).timestamp(),) * 2)
    tiny_lib.add_folders([photos])
    query = sorted(photos.glob("*.jpg"))[0]
    in_folder = tiny_lib.search(image=query, k=20, folder=sub)
    assert sorted(_names(in_folder)) == sorted(p.name for p in moved)
    dated = tiny_lib.search(image=query, k=20, date_from=datetime(2020, 1, 1),
                            date_to=datetime(2020, 12, 31))
    assert sorted(_names(dated)) == sorted(p.name for p in moved)
    assert tiny_lib.search(image=query, k=5, date_to=datetime(1990, 1, 1)) == []


def test_clear_errors(tiny_lib, tmp_path, photos):
    with pytest.raises(LibraryError, match="empty"):
        tiny_lib.search("anything")
    with pytest.raises(LibraryError, match="no such folder"):
        tiny_lib.add_folders([tmp_path / "nope"])
    with pytest.raises(LibraryError, match="not a folder"):
        tiny_lib.add_folders([sorted(photos.iterdir())[0]])
    tiny_lib.add_folders([photos])
    with pytest.raises(QueryError, match="empty"):
        tiny_lib.search("   ")
    with pytest.raises(QueryError, match="no such image file"):
        tiny_lib.search(image=tmp_path / "missing.jpg")
    with pytest.raises(QueryError, match="cancel"):
        tiny_lib.search("cat - cat")
