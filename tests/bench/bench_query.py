"""Query latency at 10k, 100k and 1M photos, against a plain numpy scan in the same run.

    .venv/bin/python tests/bench/bench_query.py [--sizes 10000,100000,1000000]

The library's vectors are synthetic but shaped like real ones: the bundled model's embeddings of
the flickr8k-1k photos, each copied many times with noise. The catalog holds one row per photo.
A text query is timed end to end through ``Library.search`` (encode the text, k-NN in the index
type Chikaku picks at that size, catalog lookup of the hits); an image query likewise from a
photo file. Recall@10 is measured against exact search; the peer baseline is the same query
vectors scanned with numpy (``V @ q`` then ``argpartition``). Prints a table last.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from engine.evaluate import embed_images, load_dataset
from engine.index import VectorIndex, recall_at
from engine.library import Library

DATASET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "flickr8k-1k"


def synthetic(base: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        v = base[rng.integers(0, len(base), m)] + rng.normal(0, 0.04, (m, base.shape[1]))
        out[s : s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def fill_catalog(db: Path, n: int) -> None:
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("DELETE FROM photos")
    now = "2024-01-01 00:00:00"
    con.executemany(
        "INSERT INTO photos (id, path, size, mtime_ns, status, added_at, updated_at, date) "
        "VALUES (?, ?, 1000, 0, 'ok', ?, ?, ?)",
        ((i, f"/photos/{i // 1000:04d}/img_{i:07d}.jpg", now, now, now) for i in range(1, n + 1)))
    con.commit()
    con.close()


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dataset", default=str(DATASET))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chikaku-bench-query-"))
    lib = Library.open(work / "library", device="cpu")
    model = lib.model
    data = load_dataset(args.dataset, "test")
    base = embed_images(model, data.images)
    texts = data.captions[::20][:50]
    query_images = data.images[:20]
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        vecs = synthetic(base, n)
        ids = np.arange(1, n + 1, dtype=np.int64)
        fill_catalog(work / "library" / "catalog.db", n)
        t = time.perf_counter()
        lib._index = VectorIndex.build(model.dim, model.version, ids, vecs,
                                       queries=lambda: lib.tuning_queries(model))
        build = time.perf_counter() - t
        lib._index_in_step()  # the index matches the catalog as it is now
        for q in texts[:3]:
            lib.search(q, k=10)  # warm up
        # Each kind of query in its own loop: interleaving them would let one library's idle
        # worker threads (numpy's BLAS, torch's OpenMP) spin on the cores the next one needs.
        text_t, image_t, knn_t, numpy_t, got, exact = [], [], [], [], [], []
        for q in texts:
            t = time.perf_counter()
            lib.search(q, k=10)
            text_t.append(time.perf_counter() - t)
        for p in query_images:
            t = time.perf_counter()
            lib.search(image=p, k=10)
            image_t.append(time.perf_counter() - t)
        qvs = model.encode_texts(texts)
        for qv in qvs:
            t = time.perf_counter()
            _, found = lib._index.search(qv, 10)
            knn_t.append(time.perf_counter() - t)
            got.append(found)
        for qv in qvs:
            t = time.perf_counter()
            scores = vecs @ qv
            top = np.argpartition(-scores, 10)[:10]
            top = top[np.argsort(-scores[top])]
            numpy_t.append(time.perf_counter() - t)
            exact.append(ids[top])
        recall = recall_at(np.stack(got), np.stack(exact))
        rows.append((n, lib._index.kind, build, statistics.median(text_t) * 1000,
                     pct(text_t, 95), statistics.median(image_t) * 1000, pct(image_t, 95),
                     statistics.median(knn_t) * 1000, statistics.median(numpy_t) * 1000,
                     recall))
        del vecs
    print()
    print(f"threads: faiss {faiss.omp_get_max_threads()}")
    print(f"{'photos':>9} {'index':>5} {'build s':>8} {'text p50':>9} {'text p95':>9} "
          f"{'image p50':>10} {'image p95':>10} {'kNN p50':>8} {'numpy p50':>10} {'R@10':>6}")
    for n, kind, build, tp50, tp95, ip50, ip95, kp50, np50, rec in rows:
        print(f"{n:>9} {kind:>5} {build:8.1f} {tp50:7.1f}ms {tp95:7.1f}ms {ip50:8.1f}ms "
              f"{ip95:8.1f}ms {kp50:6.2f}ms {np50:8.2f}ms {rec:6.3f}")


if __name__ == "__main__":
    main()
