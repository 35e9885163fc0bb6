"""A large library's approximate index is tuned on text queries, because people search with
words: a text query lies farther from every photo than a photo does from its neighbours, so its
nearest photos are spread over more of the index's lists. Tuned on photos alone, the index opens
too few lists and word searches miss photos exact search finds.

Small synthetic setups (10,000 vectors, the IVF threshold lowered), a second or two each.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from sqlalchemy import insert

import engine.index as index_mod
from engine.catalog import Embedding, Photo
from engine.index import VectorIndex, recall_at
from engine.vectors import tuning_queries

N, DIM = 10_000, 32


def _unit(v) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _photos(seed: int = 0, spread: float = 0.6) -> np.ndarray:
    """Photos in 50 groups (beaches, dogs, birthdays ...)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, DIM))
    return _unit(centres[rng.integers(0, 50, N)] + rng.normal(scale=spread, size=(N, DIM)))


def _exact_top10(queries: np.ndarray, photos: np.ndarray) -> np.ndarray:
    return faiss.knn(queries, photos, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]


def test_an_index_tuned_on_text_queries_finds_what_exact_search_finds(monkeypatch):
    monkeypatch.setattr(index_mod, "IVF_THRESHOLD", 5000)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, DIM))
    photos = _unit(centres[rng.integers(0, 50, N)] + rng.normal(scale=0.6, size=(N, DIM)))
    gap = rng.normal(size=DIM)  # texts sit to one side of the photos (the "modality gap")
    gap *= 1.2 / np.linalg.norm(gap)

    def texts(count: int, seed: int) -> np.ndarray:
        r = np.random.default_rng(seed)
        c = centres[r.integers(0, 50, count)]
        return _unit(c / np.linalg.norm(c, axis=1, keepdims=True) + gap
                     + r.normal(scale=0.8 * 3 / np.sqrt(DIM), size=(count, DIM)))

    ids = np.arange(1, N + 1, dtype=np.int64)
    tuning, searched = texts(120, 1), texts(300, 2)  # the searches are not the tuning queries
    idx = VectorIndex.build(DIM, "v1", ids, photos, use_gpu=False, queries=lambda: tuning)
    assert idx.kind == "ivf"
    got = np.stack([idx.search(q, 10)[1] for q in searched])
    assert recall_at(got, ids[_exact_top10(searched, photos)]) >= 0.95


HELD_OUT = [f"{who} {where}" for who in ("my sister", "an old dog", "three kids", "a red kite",
                                         "a tram", "a sailing boat")
            for where in ("by the lake", "under the rain", "in the garden", "at dawn",
                          "on a bridge")]


@pytest.mark.parametrize("grown", [False, True], ids=["rebuilt", "grown past the threshold"])
def test_a_large_library_answers_word_searches_like_exact_search(tiny_lib, monkeypatch, grown):
    """The library tunes its index with its own model's text queries, whether the index is
    rebuilt from the catalog or converted as the library grows."""
    photos = _photos()
    version = tiny_lib.model.version
    monkeypatch.setattr(index_mod, "IVF_THRESHOLD", 5000)
    with tiny_lib.catalog.session() as s:
        s.execute(insert(Photo), [{"id": i + 1, "path": f"/photos/{i:05d}.jpg", "size": 1000 + i,
                                   "mtime_ns": 0, "status": "ok"} for i in range(N)])
        s.execute(insert(Embedding), [{"photo_id": i + 1, "model_version": version,
                                       "vector": photos[i].tobytes()} for i in range(N)])
        tiny_lib.catalog.bump_generation(s)
    if grown:  # an exact index that passed the threshold: converted off to the side
        idx = VectorIndex(DIM, version, use_gpu=False)
        idx.add(np.arange(1, N + 1), photos)
        thread = idx.maybe_convert(lambda: tiny_lib.catalog.vectors(version),
                                   lambda: tuning_queries(tiny_lib.model))
        thread.join(120)
    else:
        idx = tiny_lib.index
    assert idx.kind == "ivf" and len(idx) == N

    queries = tiny_lib.model.encode_texts(HELD_OUT)
    got = np.stack([idx.search(q, 10)[1] for q in queries])
    assert recall_at(got, _exact_top10(queries, photos) + 1) >= 0.95
    if not grown:  # and what a person sees: the same first ten photos, through search()
        hits = tiny_lib.search(HELD_OUT[0], k=10)
        truth = _exact_top10(queries[:1], photos)[0] + 1
        assert len({h.photo_id for h in hits} & set(truth.tolist())) >= 9
