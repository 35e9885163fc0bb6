"""Query latency at 10k, 100k and 300k photos, with fair peer baselines measured in the same run.

    .venv/bin/python tests/bench/bench_query.py [--sizes 10000,100000,300000] [--device cpu]

The library's vectors are synthetic but shaped like real ones: the bundled model's embeddings of
the flickr8k-1k photos, each copied many times with noise. The catalog holds one row per photo.
A text query is timed end to end through ``Library.search`` (encode the text, k-NN in the index
type Chikaku picks at that size, catalog lookup of the hits); an image query likewise from a
photo file; encoding a query's words alone is timed too.

The k-NN step alone is then compared like with like, on the same 50 text-query vectors:

- exact search: FAISS's ``IndexFlatIP`` and numpy (``V @ q``, ``argpartition``), each on one
  thread (FAISS's OpenMP and numpy's BLAS limited to one) and on all cores;
- approximate search (sizes where Chikaku builds an inverted file): FAISS's ``IndexIVFFlat`` as
  Chikaku builds and tunes it, and the same inverted file scanned with numpy (the same lists,
  the same ``nprobe``: each probed list is a contiguous block, ``block @ q``), one thread each.

Each method runs in its own loop (interleaving would let one library's idle worker threads spin
on the cores the next one needs), three rounds, median reported. Recall@10 is against exact
search. With ``--device cuda`` the model runs on the GPU and the engine searches with FAISS on
the GPU when faiss-gpu is installed. Prints the tables last.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

from engine.evaluate import embed_images, load_dataset
from engine.index import VectorIndex, recall_at
from engine.library import Library
from engine.vectors import tuning_queries

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


ROUNDS = 3


def ms(values: list[float], p: float = 50) -> float:
    return float(np.percentile(values, p)) * 1000


def timed(fn: Callable[[np.ndarray], np.ndarray], queries: np.ndarray) -> tuple[float, list]:
    """Median milliseconds of fn over the queries, ROUNDS times round; and its last answers."""
    times, found = [], []
    for _ in range(ROUNDS):
        found = []
        for q in queries:
            t = time.perf_counter()
            found.append(fn(q))
            times.append(time.perf_counter() - t)
    return ms(times), found


def numpy_exact(vecs: np.ndarray, ids: np.ndarray, k: int) -> Callable:
    def search(q: np.ndarray) -> np.ndarray:
        scores = vecs @ q
        top = np.argpartition(-scores, k)[:k]
        return ids[top[np.argsort(-scores[top])]]
    return search


def faiss_search(index: faiss.Index, k: int, ids: np.ndarray | None = None) -> Callable:
    def search(q: np.ndarray) -> np.ndarray:
        found = index.search(q[None], k)[1][0]
        return found if ids is None else ids[found]
    return search


def numpy_ivf(ivf: faiss.IndexIVFFlat, k: int) -> Callable:
    """The same inverted file as ``ivf`` (its centroids, lists and nprobe), scanned with numpy:
    each list's vectors one contiguous block, as an IVF keeps them."""
    lists, dim = ivf.invlists, ivf.d
    centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    sizes = np.array([lists.list_size(i) for i in range(ivf.nlist)], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    blocks = np.empty((int(sizes.sum()), dim), dtype=np.float32)
    list_ids = np.empty(int(sizes.sum()), dtype=np.int64)
    for i in np.flatnonzero(sizes):
        n = int(sizes[i])
        codes = faiss.rev_swig_ptr(lists.get_codes(int(i)), n * lists.code_size)
        blocks[starts[i]:starts[i + 1]] = np.frombuffer(codes, np.float32).reshape(n, dim)
        list_ids[starts[i]:starts[i + 1]] = faiss.rev_swig_ptr(lists.get_ids(int(i)), n)
    nprobe = min(ivf.nprobe, ivf.nlist)

    def search(q: np.ndarray) -> np.ndarray:
        near = centroids @ q
        probe = np.argpartition(-near, nprobe - 1)[:nprobe] if nprobe < len(near) else \
            np.arange(len(near))
        spans = [(starts[i], starts[i + 1]) for i in probe if sizes[i]]
        scores = np.concatenate([blocks[a:b] @ q for a, b in spans])
        rows = np.concatenate([list_ids[a:b] for a, b in spans])
        top = np.argpartition(-scores, k)[:k] if len(scores) > k else np.arange(len(scores))
        return rows[top[np.argsort(-scores[top])]]
    return search


def knn_row(lib: Library, vecs: np.ndarray, ids: np.ndarray, qvs: np.ndarray) -> dict:
    """The k-NN step alone: the engine's own index, then exact and approximate peers."""
    k, row = 10, {}
    threads = faiss.omp_get_max_threads()
    row["engine"], got = timed(lambda q: lib.store.loaded.search(q, k)[1], qvs)
    flat = faiss.IndexFlatIP(vecs.shape[1])
    flat.add(vecs)
    with threadpool_limits(1):
        faiss.omp_set_num_threads(1)
        row["faiss exact"], _ = timed(faiss_search(flat, k, ids), qvs)
        row["numpy exact"], exact = timed(numpy_exact(vecs, ids, k), qvs)
        inner = lib.store.loaded._index
        if isinstance(inner, faiss.IndexIVF):
            row["faiss ivf"], _ = timed(faiss_search(inner, k), qvs)
            row["numpy ivf"], approx = timed(numpy_ivf(inner, k), qvs)
            row["numpy ivf R@10"] = recall_at(np.stack(approx), np.stack(exact))
    faiss.omp_set_num_threads(threads)
    row["faiss exact all"], _ = timed(faiss_search(flat, k, ids), qvs)
    row["numpy exact all"], _ = timed(numpy_exact(vecs, ids, k), qvs)  # last: BLAS threads spin
    row["R@10"] = recall_at(np.stack(got), np.stack(exact))
    del flat
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,300000")
    ap.add_argument("--dataset", default=str(DATASET))
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chikaku-bench-query-"))
    lib = Library.open(work / "library", device=args.device)
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
        built = VectorIndex.build(model.dim, model.version, ids, vecs,
                                  queries=lambda: tuning_queries(model))
        build = time.perf_counter() - t
        lib.store.adopt(built, save=False)  # the index matches the catalog as it is now
        for q in texts[:3]:
            lib.search(q, k=10)  # warm up
        # Each kind of query in its own loop: interleaving them would let one library's idle
        # worker threads (numpy's BLAS, torch's OpenMP) spin on the cores the next one needs.
        text_t, image_t, encode_t = [], [], []
        for q in texts:
            t = time.perf_counter()
            lib.search(q, k=10)
            text_t.append(time.perf_counter() - t)
        for p in query_images:
            t = time.perf_counter()
            lib.search(image=p, k=10)
            image_t.append(time.perf_counter() - t)
        for q in texts:
            t = time.perf_counter()
            model.encode_texts([q])
            encode_t.append(time.perf_counter() - t)
        qvs = np.ascontiguousarray(model.encode_texts(texts), dtype=np.float32)
        where = "gpu" if lib.store.loaded._gpu_copy() is not None else "cpu"
        row = knn_row(lib, vecs, ids, qvs)
        rows.append(dict(row, n=n, kind=f"{lib.store.loaded.kind}/{where}", build=build,
                         text=(ms(text_t), ms(text_t, 95)), image=(ms(image_t), ms(image_t, 95)),
                         encode=ms(encode_t), nprobe=getattr(lib.store.loaded._index, "nprobe", 0)))
        del vecs
    print_tables(rows, args.device)


def print_tables(rows: list[dict], device: str) -> None:
    print()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"cores: {os.cpu_count()}, model on {device}, faiss {faiss.__version__}, "
          f"load average {load}")
    print("end to end, Library.search (k = 10):")
    print(f"{'photos':>9} {'index':>9} {'build s':>8} {'encode p50':>11} {'text p50':>9} "
          f"{'text p95':>9} {'image p50':>10} {'image p95':>10}")
    for r in rows:
        print(f"{r['n']:>9} {r['kind']:>9} {r['build']:8.1f} {r['encode']:9.2f}ms "
              f"{r['text'][0]:7.1f}ms {r['text'][1]:7.1f}ms {r['image'][0]:8.1f}ms "
              f"{r['image'][1]:8.1f}ms")
    print()
    print("k-NN alone, p50 ms per query (1t: one thread; all: every core); R@10 against exact:")
    print(f"{'photos':>9} {'engine':>7} {'R@10':>6} | exact: {'faiss 1t':>8} {'numpy 1t':>8} "
          f"{'faiss all':>9} {'numpy all':>9} | approximate: {'nprobe':>6} {'faiss 1t':>8} "
          f"{'numpy 1t':>8} {'R@10':>6}")

    def cell(r: dict, key: str, width: int, fmt: str = ".2f") -> str:
        return f"{r[key]:{width}{fmt}}" if key in r else f"{'-':>{width}}"

    for r in rows:
        print(f"{r['n']:>9} {r['engine']:7.2f} {r['R@10']:6.3f} |        "
              f"{r['faiss exact']:8.2f} {r['numpy exact']:8.2f} {r['faiss exact all']:9.2f} "
              f"{r['numpy exact all']:9.2f} |              "
              f"{(str(r['nprobe']) if 'faiss ivf' in r else '-'):>6} {cell(r, 'faiss ivf', 8)} "
              f"{cell(r, 'numpy ivf', 8)} {cell(r, 'numpy ivf R@10', 6, '.3f')}")


if __name__ == "__main__":
    main()
