"""Indexes past one machine's comfort: the memory budget picks the index kind, an index built
shard by shard (merged in memory or on disk) answers like one built at once, and a filter is a
bitmap or a range that answers like the list of its ids.

Small synthetic setups (tens of thousands of vectors, the IVF threshold lowered), seconds each.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from sqlalchemy import insert, text

import engine.index as index_mod
from engine.bigindex import build_sharded, read_ondisk
from engine.catalog import Embedding, Photo
from engine.errors import LibraryError
from engine.index import IdFilter, IndexPlan, VectorIndex, parse_memory, plan_for, recall_at

DIM = 32


def _clustered(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    centres = np.random.default_rng(0).normal(size=(40, dim))  # the same groups every time
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, 40, n)] + rng.normal(scale=0.7, size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _chunks(ids, vecs, size):
    for i in range(0, len(ids), size):
        yield ids[i : i + size], vecs[i : i + size]


# -- the memory budget ------------------------------------------------------------------------
def test_the_memory_budget_picks_the_kind_the_readme_gives():
    """At the bundled model's 384 dimensions (the README's table)."""
    assert plan_for(40_000, 384, parse_memory("8G")).kind == "flat"
    assert plan_for(100_000, 384, parse_memory("1G")).kind == "ivf"
    assert plan_for(1_000_000, 384, parse_memory("8G")).kind == "ivf"
    assert plan_for(1_000_000, 384, None).kind == "ivf"
    assert plan_for(10_000_000, 384, None).kind == "ivf"  # no budget: as before
    big = plan_for(10_000_000, 384, parse_memory("8G"))
    assert (big.kind, big.m) == ("ivfpq", 192)
    assert big.memory(10_000_000, 384) <= parse_memory("8G")
    assert (plan_for(10_000_000, 384, parse_memory("1G")).m,
            plan_for(100_000_000, 384, parse_memory("8G")).m) == (96, 64)
    for n, budget in [(1_000_000, "512M"), (10_000_000, "2G"), (100_000_000, "4G")]:
        plan = plan_for(n, 384, parse_memory(budget))
        assert plan.kind == "ivfpq" and plan.memory(n, 384) <= parse_memory(budget)
        bigger = [m for m in index_mod.pq_sizes(384) if m > plan.m]
        if bigger:  # the largest code that fits
            assert IndexPlan("ivfpq", plan.nlist, bigger[-1]).memory(n, 384) > parse_memory(
                budget)


def test_a_budget_too_small_or_not_a_size_says_so():
    with pytest.raises(LibraryError, match="does not fit in 64 MB"):
        plan_for(100_000_000, 384, parse_memory("64M"))
    for bad in ("lots", "-2G", "0", "nanG", "8X"):
        with pytest.raises(LibraryError, match="not a memory size"):
            parse_memory(bad)
    with pytest.raises(LibraryError, match="too small"):
        parse_memory("1M")
    assert parse_memory("1.5g") == 3 << 29 and parse_memory("512MiB") == 512 << 20


# -- sharded builds ---------------------------------------------------------------------------
@pytest.mark.parametrize("plan", [IndexPlan("ivf", 64), IndexPlan("ivfpq", 64, 16)],
                         ids=["ivf-flat", "ivf-pq"])
@pytest.mark.parametrize("ondisk", [False, True], ids=["merged in memory", "merged on disk"])
def test_a_sharded_index_finds_what_one_index_over_everything_finds(tmp_path, plan, ondisk):
    n = 30_000
    vecs = _clustered(n)
    ids = np.arange(n, dtype=np.int64) * 7 + 3  # photo ids need not start at 0 or follow on
    rng = np.random.default_rng(1)
    sample = vecs[rng.choice(n, 10_000, replace=False)]
    data = tmp_path / "merged.ivfdata" if ondisk else None
    sharded = build_sharded(plan, sample, _chunks(ids, vecs, 7000), tmp_path / "work",
                            ondisk=data, workers=2)
    assert sharded.ntotal == n and not list((tmp_path / "work").iterdir())

    whole = plan.empty(DIM)  # one index, trained the same way, every vector added at once
    whole.train(sample)
    whole.add_with_ids(vecs, ids)
    whole.nprobe = sharded.nprobe
    queries = _clustered(200, seed=2)
    s_scores, s_ids = sharded.search(queries, 10)
    w_scores, w_ids = whole.search(queries, 10)
    np.testing.assert_array_equal(s_ids, w_ids)
    np.testing.assert_allclose(s_scores, w_scores, rtol=1e-5, atol=1e-5)
    exact = ids[faiss.knn(queries, vecs, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]]
    assert recall_at(s_ids, exact) >= (0.95 if plan.kind == "ivf" else 0.5)
    if ondisk:  # saved, and read back with a plain read_index, it answers the same
        faiss.write_index(sharded, str(tmp_path / "merged.faiss"))
        again = read_ondisk(tmp_path / "merged.faiss")
        again.nprobe = sharded.nprobe
        np.testing.assert_array_equal(again.search(queries, 10)[1], w_ids)


def test_a_pq_index_stops_opening_lists_when_it_gains_nothing(tmp_path):
    """PQ codes cap recall below TARGET_RECALL: nprobe stops short of opening every list."""
    n = 30_000
    vecs = _clustered(n)
    plan = IndexPlan("ivfpq", 128, 4)  # coarse codes: recall plateaus well below the target
    index = build_sharded(plan, vecs[:6000], _chunks(np.arange(n), vecs, 10_000), tmp_path)
    assert 1 <= index.nprobe < plan.nlist // 2


# -- the library with a budget ----------------------------------------------------------------
def _large(lib, monkeypatch, n: int = 12_000) -> np.ndarray:
    """A library of n photos in three folders (/photos/0, 1, 2), the IVF threshold lowered."""
    photos = _clustered(n)
    version = lib.model.version
    monkeypatch.setattr(index_mod, "IVF_THRESHOLD", 5000)
    monkeypatch.setattr(index_mod, "MIN_MEMORY", 0)
    monkeypatch.setattr("engine.vectors.SHARD_BYTES", 5000 * 4 * DIM)  # three shards
    with lib.catalog.session() as s:
        s.execute(insert(Photo), [{"id": i + 1, "path": f"/photos/{i % 3}/{i:05d}.jpg",
                                   "size": 1000 + i, "mtime_ns": 0, "status": "ok"}
                                  for i in range(n)])
        s.execute(insert(Embedding), [{"photo_id": i + 1, "model_version": version,
                                       "vector": photos[i].tobytes()} for i in range(n)])
        lib.catalog.bump_generation(s)
    return photos


def test_a_budget_set_on_the_library_rebuilds_its_index_as_it_says(tiny_lib, monkeypatch):
    _large(tiny_lib, monkeypatch)
    assert tiny_lib.index.kind == "ivf"
    # IVF-Flat needs 12,000 * (4 * 32 + 8) bytes; PQ with 16 bytes a vector fits in 480K
    assert tiny_lib.set_index_memory("480K") == "ivfpq"
    assert tiny_lib.index.kind == "ivfpq" and tiny_lib.index.plan.m == 16
    with pytest.raises(LibraryError, match="does not fit"):
        tiny_lib.set_index_memory("100K")
    assert tiny_lib.index.kind == "ivfpq" and tiny_lib.store.memory() == 480 << 10  # kept
    assert tiny_lib.set_index_memory(None) == "ivf" and tiny_lib.index.kind == "ivf"


def test_a_filter_is_made_once_and_follows_the_catalog(tiny_lib, monkeypatch):
    _large(tiny_lib, monkeypatch)
    store = tiny_lib.store
    first = store.filter("/photos/1/", None, None)
    assert len(first) == 4000 and first is store.filter("/photos/1/", None, None)
    hits = tiny_lib.search(query="a dog", k=10, folder="/photos/1")
    assert len(hits) == 10 and all(h.path.startswith("/photos/1/") for h in hits)
    tiny_lib.store.remove([2])  # photo 2 is in /photos/1; removed from the catalog first
    with tiny_lib.catalog.session() as s:
        s.query(Photo).filter(Photo.id == 2).delete()
        tiny_lib.catalog.bump_generation(s)
    after = store.filter("/photos/1/", None, None)
    assert after is not first and len(after) == 3999 and not after.contains([2])[0]


def test_a_library_over_its_budget_builds_pq_shard_by_shard_and_keeps_it(tiny_lib, monkeypatch):
    n = 12_000
    photos = _large(tiny_lib, monkeypatch, n)
    store = tiny_lib.store
    store.set_memory(n * 40)  # IVF-Flat needs n * (4 * 32 + 8) bytes: PQ it is
    assert store.memory() == n * 40
    idx = store.build(tiny_lib.model)
    assert idx.kind == "ivfpq" and len(idx) == n
    queries = _clustered(100, seed=3)
    got = np.stack([idx.search(q, 10)[1] for q in queries])
    assert recall_at(got, faiss.knn(queries, photos, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]
                     + 1) >= 0.5
    store.save(idx)
    again = store.of(tiny_lib.model)  # the saved index is the library's: loaded, not rebuilt
    assert again.kind == "ivfpq" and again.nprobe == idx.nprobe
    np.testing.assert_array_equal(np.stack([again.search(q, 10)[1] for q in queries]), got)
    # a folder filter over it: only that folder's photos
    hits = tiny_lib.search(image=None, query="a dog", k=10, folder="/photos/1")
    assert hits and all(h.path.startswith("/photos/1/") for h in hits)
    store.set_memory(None)
    assert store.memory() is None and store.build(tiny_lib.model).kind == "ivf"


# -- filters ----------------------------------------------------------------------------------
def test_a_filter_holds_exactly_its_ids_as_a_range_or_a_bitmap():
    spread = IdFilter([5, 9, 64, 65, 1000, 9])
    assert len(spread) == 5 and not spread.contiguous
    assert spread.contains([0, 5, 8, 9, 63, 64, 65, 66, 999, 1000, 1001, 10**9]).tolist() == [
        False, True, False, True, False, True, True, False, False, True, False, False]
    assert spread.ids().tolist() == [5, 9, 64, 65, 1000]
    run = IdFilter(np.arange(100, 200))
    assert run.contiguous and run.nbytes == 0 and len(run) == 100
    assert run.contains([99, 100, 199, 200]).tolist() == [False, True, True, False]
    empty = IdFilter([])
    assert len(empty) == 0 and not empty.contains([0, 1]).any()


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_searching_within_a_filter_finds_what_the_list_of_its_ids_finds(monkeypatch, kind):
    monkeypatch.setattr(index_mod, "IVF_THRESHOLD", 5000 if kind == "ivf" else 10**9)
    n = 12_000
    vecs = _clustered(n)
    ids = np.arange(1, n + 1, dtype=np.int64)
    idx = VectorIndex.build(DIM, "v1", ids, vecs, use_gpu=False)
    assert idx.kind == kind
    rng = np.random.default_rng(5)
    for allowed in (ids[rng.random(n) < 0.3], ids[4000:7000], ids[[17]]):
        f = IdFilter(allowed)
        for q in _clustered(20, seed=6):
            for every in (False, True):
                a = idx.search(q, 10, allowed, every=every)
                b = idx.search(q, 10, f, every=every)
                np.testing.assert_array_equal(a[1], b[1])
                np.testing.assert_allclose(a[0], b[0])
                assert np.isin(b[1], allowed).all()


def test_a_small_folder_of_a_large_library_shows_all_its_photos(tiny_lib, monkeypatch):
    """An inverted file looks only in the lists nearest the query; a folder of a few photos
    spread over other lists still shows every one of them when asked for more than it holds."""
    _large(tiny_lib, monkeypatch)
    with tiny_lib.catalog.session() as s:  # 12 photos, from all over the library, in a folder
        for i in range(12):
            s.execute(text("UPDATE photos SET path = :p WHERE id = :i"),
                      {"p": f"/photos/few/{i:02d}.jpg", "i": 1 + i * 997})
        tiny_lib.catalog.bump_generation(s)
    assert tiny_lib.index.kind == "ivf" and tiny_lib.index.nprobe < tiny_lib.index.plan.nlist
    hits = tiny_lib.search(query="a dog", k=20, folder="/photos/few")
    assert sorted(h.path for h in hits) == [f"/photos/few/{i:02d}.jpg" for i in range(12)]
