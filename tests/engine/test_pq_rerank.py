"""An IVF-PQ index re-ranks its shortlist with the catalog's stored vectors: it finds more of the
exact top 10 than its codes alone, and the scores it returns are the exact cosines. Exact and
IVF-Flat indexes search as before, without reading a stored vector.

A library of 12,000 clustered vectors with the IVF threshold lowered (tests/engine/
test_big_index.py's setup), seconds each.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

import engine.index as index_mod
from engine.index import VectorIndex, recall_at, shortlist
from engine.query import parse_query
from tests.engine.test_big_index import DIM, _clustered, _large

N = 12_000


def _text_like(count: int, seed: int) -> np.ndarray:
    """Queries off to one side of the photos, as word queries lie."""
    rng = np.random.default_rng(seed)
    gap = _clustered(1, seed=99)[0]
    x = _clustered(count, seed=seed) + 0.8 * gap + rng.normal(scale=0.3, size=(count, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def pq_library(tiny_lib, monkeypatch):
    """(library, its photos' vectors (photo id i + 1 is row i), its IVF-PQ index)."""
    photos = _large(tiny_lib, monkeypatch, N)
    tiny_lib.set_index_memory(str(N * 24))  # 8-byte codes for 32 dimensions: PQ, and coarse
    idx = tiny_lib.index
    assert idx.kind == "ivfpq" and idx.plan.m == 8 and idx.exact is not None
    return tiny_lib, photos, idx


def _top10(idx, queries):
    return [idx.search(q, 10) for q in queries]


def test_re_ranking_finds_more_of_the_exact_top_ten_and_returns_exact_cosines(pq_library):
    lib, photos, idx = pq_library
    codes_only = VectorIndex.wrap(idx._index, idx.version, use_gpu=False)  # no stored vectors
    for queries in (_clustered(100, seed=3), _text_like(100, seed=4)):
        truth = faiss.knn(queries, photos, 10, metric=faiss.METRIC_INNER_PRODUCT)[1] + 1
        before = recall_at(np.stack([ids for _s, ids in _top10(codes_only, queries)]), truth)
        found = _top10(idx, queries)
        after = recall_at(np.stack([ids for _s, ids in found]), truth)
        assert after > before + 0.05 and after >= 0.9, (before, after)
        for q, (scores, ids) in zip(queries, found, strict=True):
            assert len(ids) == 10 and (np.diff(scores) <= 0).all()
            np.testing.assert_allclose(scores, photos[ids - 1] @ q, rtol=0, atol=1e-6)


def test_re_ranking_reads_only_its_shortlist_of_stored_vectors(pq_library):
    _lib, _photos, idx = pq_library
    exact, asked = idx.exact, []

    def counted(ids):
        asked.append(len(ids))
        return exact(ids)

    idx.exact = counted
    q = _clustered(1, seed=5)[0]
    for k in (1, 10, 200):
        asked.clear()
        assert len(idx.search(q, k)[1]) == k
        assert asked == [shortlist(k)]
    assert (shortlist(10), shortlist(200), shortlist(5000)) == (64, 800, 6024)


def test_scoring_given_photos_gives_their_exact_cosines(pq_library):
    _lib, photos, idx = pq_library
    q = _clustered(1, seed=6)[0]
    given = np.array([5, 17, 4000, 11_999], dtype=np.int64)
    scores, ids = idx.search(q, len(given), given, every=True)
    assert sorted(ids.tolist()) == sorted(given.tolist())
    np.testing.assert_allclose(scores, photos[ids - 1] @ q, rtol=0, atol=1e-6)


def test_a_search_of_the_library_shows_exact_cosines(pq_library):
    lib, photos, _idx = pq_library
    hits = lib.search(query="a dog on the beach", k=10)
    q = lib.query_vector(parse_query("a dog on the beach"))
    ids = np.array([h.photo_id for h in hits])
    assert len(hits) == 10
    np.testing.assert_allclose([h.score for h in hits], photos[ids - 1] @ q, rtol=0, atol=1e-5)
    best = faiss.knn(q[None].astype(np.float32), photos, 10,
                     metric=faiss.METRIC_INNER_PRODUCT)[1][0] + 1
    assert len(set(ids.tolist()) & set(best.tolist())) >= 8


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_exact_and_ivf_flat_indexes_never_read_stored_vectors(monkeypatch, kind):
    monkeypatch.setattr(index_mod, "IVF_THRESHOLD", 5000 if kind == "ivf" else 10**9)
    vecs = _clustered(N)
    ids = np.arange(1, N + 1, dtype=np.int64)
    plain = VectorIndex.build(DIM, "v1", ids, vecs, use_gpu=False)
    given = VectorIndex.wrap(plain._index, "v1", use_gpu=False)

    def refused(_ids):
        raise AssertionError("an index with exact scores read stored vectors")

    given.exact = refused
    assert given.kind == kind
    for q in _clustered(20, seed=7):
        for allowed, every in ((None, False), (ids[::3], False), (ids[[4, 40, 400]], True)):
            a = plain.search(q, 10, allowed, every=every)
            b = given.search(q, 10, allowed, every=every)
            np.testing.assert_array_equal(a[1], b[1])
            np.testing.assert_array_equal(a[0], b[0])
