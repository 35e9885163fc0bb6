"""The vector index: exact when small, IVF when large with recall kept, atomic save/load."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

import engine.index as index_mod
from engine.index import VectorIndex, recall_at


def _clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    v = centres[rng.integers(0, 50, n)] + rng.normal(scale=0.6, size=(n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_large_library_gets_an_ivf_index_with_recall_against_exact(monkeypatch, tmp_path):
    monkeypatch.setattr(index_mod, "IVF_THRESHOLD", 5000)
    both = _clustered(20100)
    vecs, queries = both[:20000], both[20000:]  # queries: new photos like the library's
    ids = np.arange(100, 20100, dtype=np.int64)
    idx = VectorIndex.build(32, "v1", ids, vecs)
    assert idx.kind == "ivf" and len(idx) == 20000
    _, pos = faiss.knn(queries, vecs, 10, metric=faiss.METRIC_INNER_PRODUCT)
    got = np.stack([idx.search(q, 10)[1] for q in queries])
    assert recall_at(got, ids[pos]) >= 0.95

    idx.remove(ids[:10])
    assert len(idx) == 19990 and ids[0] not in idx.search(vecs[0], 5)[1]
    allowed = ids[5000:5100]
    _, only = idx.search(vecs[5050], 10, allowed=allowed)
    assert set(only) <= set(allowed) and only[0] == ids[5050]

    idx.save(tmp_path, generation=7)
    again = VectorIndex.load(tmp_path, "v1", 32, 7)
    assert again.kind == "ivf" and len(again) == 19990
    assert VectorIndex.load(tmp_path, "v1", 32, 8) is None  # stale: rebuilt by the caller


def test_small_index_is_exact_and_converts_when_it_grows(monkeypatch):
    monkeypatch.setattr(index_mod, "IVF_THRESHOLD", 3000)
    vecs = _clustered(4000)
    ids = np.arange(4000, dtype=np.int64)
    idx = VectorIndex.build(32, "v1", ids[:1000], vecs[:1000])
    assert idx.kind == "flat"
    scores, found = idx.search(vecs[3], 1)
    assert found[0] == 3 and scores[0] == pytest.approx(1.0, abs=1e-5)
    idx.add(ids[1000:], vecs[1000:])
    thread = idx.maybe_convert(lambda: (ids, vecs))
    assert thread is not None
    thread.join(60)
    assert idx.kind == "ivf" and len(idx) == 4000
    assert idx.search(vecs[3500], 1)[1][0] == 3500


def test_exact_search_matches_brute_force_with_ids_after_removals_and_replacements():
    vecs = _clustered(3000, seed=1)
    ids = np.arange(3000, dtype=np.int64) * 7 + 11  # photo ids are not row numbers
    idx = VectorIndex.build(32, "v1", ids, vecs)
    assert idx.kind == "flat"
    gone = ids[::3]
    idx.remove(gone)
    moved = ids[1:300:3]  # re-embedded photos keep their id and get a new vector
    new = _clustered(len(moved), seed=2)
    idx.add(moved, new)
    live = {int(i): v for i, v in zip(ids, vecs, strict=True) if i not in set(gone.tolist())}
    live.update({int(i): v for i, v in zip(moved, new, strict=True)})
    assert len(idx) == len(live)
    keys = np.array(list(live), dtype=np.int64)
    matrix = np.stack(list(live.values()))
    for q in _clustered(20, seed=3):
        scores, found = idx.search(q, 10)
        truth = matrix @ q
        order = np.argsort(-truth, kind="stable")[:10]
        np.testing.assert_allclose(scores, truth[order], atol=1e-5)
        assert set(found.tolist()) == set(keys[order].tolist())
        assert not set(found.tolist()) & set(gone.tolist())
        allowed = keys[::5]
        _, only = idx.search(q, 10, allowed=allowed)
        sub = matrix[::5] @ q
        assert set(only.tolist()) == set(allowed[np.argsort(-sub)[:10]].tolist())
