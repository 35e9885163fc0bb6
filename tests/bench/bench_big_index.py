"""A large index under a memory budget: build time, memory, query latency and recall@10.

    nice -n 10 .venv/bin/python tests/bench/bench_big_index.py [--sizes 1M,10M] [--memory 1G]
    nice -n 10 .venv/bin/python tests/bench/bench_big_index.py --sizes 500k --memory 64M --rerank

For each size, synthetic clustered unit vectors of the bundled model's dimension (384) are made
a chunk at a time (never all at once) and indexed with engine.bigindex.build_sharded under the
memory budget (engine.index.plan_for picks the kind and code size): trained on a sample, added
shard by shard (two in parallel), merged on disk into one .ivfdata file, tuned, written, and
read back with a plain faiss.read_index; the searches run on the index read back.

Recall@10 is against exact search (the true top 10, kept as the chunks pass) on held-out
queries of two kinds: photo-like (near the photos, as "find similar" asks) and text-like (off
to one side of them, as word queries lie). Latency is one query at a time on one thread, the
way the app searches. Last, the memory one filtered search allocates for a filter holding half
the photos: the previous way (the ids as an array, a FAISS IDSelectorBatch over them, and the
sets the ranking made of them) against an engine.index.IdFilter made once and reused.
Peak RSS is the process's (ru_maxrss) after each size.

With ``--rerank`` the vectors are also stored in a catalog (engine.catalog, SQLite, one photo row
and one embedding row a vector, as a library keeps them), and the queries run a second time
through engine.index.VectorIndex with the catalog's stored vectors (engine.vectors.
stored_vectors): the IVF-PQ shortlist (engine.index.shortlist) re-ranked by exact cosines. Its
latency includes reading those vectors from the catalog (each way of searching goes over the
queries three times; the percentiles are over all of them). Recall@10 and latency are printed
without re-ranking, with it, and with it and four times the lists opened; and how far the
scores returned are from the exact cosines.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.bigindex import ExactTop, build_sharded, read_ondisk  # noqa: E402
from engine.catalog import Catalog  # noqa: E402
from engine.index import (  # noqa: E402
    IdFilter,
    VectorIndex,
    parse_memory,
    plan_for,
    recall_at,
    shortlist,
    training_size,
)
from engine.vectors import stored_vectors  # noqa: E402

DIM = 384  # engine.models.bundled: the bundled model's representation space
GROUPS = 2000  # kinds of photo (beaches, dogs, birthdays ...)
SUBGROUPS = 50  # within each kind, scenes (one beach on one day): near photos share one
CHUNK = 250_000  # vectors a shard
BLOCK = 10_000  # vectors made from one seed
SEED = 7


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class Photos:
    """Clustered unit vectors, made chunk by chunk from a seed (the same ones every pass)."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(SEED)
        self.n = n
        centres = _unit(rng.normal(size=(GROUPS, DIM)))
        self.scenes = _unit(np.repeat(centres, SUBGROUPS, axis=0) + rng.normal(
            scale=0.8 / np.sqrt(DIM), size=(GROUPS * SUBGROUPS, DIM)).astype(np.float32))
        self.gap = _unit(rng.normal(size=(1, DIM)))[0] * 0.6  # where text queries lie

    def block(self, number: int) -> np.ndarray:
        """Vectors BLOCK * number onwards: each block made from its own seed."""
        start = number * BLOCK
        count = min(BLOCK, self.n - start)
        rng = np.random.default_rng((SEED, number))
        return self._near(rng, count, 0.5)

    def _near(self, rng, count: int, spread: float, gap: float = 0.0) -> np.ndarray:
        scenes = self.scenes[rng.integers(0, len(self.scenes), count)]
        noise = rng.normal(scale=spread / np.sqrt(DIM), size=(count, DIM)).astype(np.float32)
        return _unit(scenes + noise + gap * self.gap)

    def chunk(self, start: int, stop: int) -> np.ndarray:
        return np.concatenate([self.block(b) for b in range(start // BLOCK,
                                                             -(-stop // BLOCK))])

    def chunks(self, exact: list[ExactTop]):
        for start in range(0, self.n, CHUNK):
            stop = min(self.n, start + CHUNK)
            ids = np.arange(start, stop, dtype=np.int64)
            vecs = self.chunk(start, stop)
            for e in exact:
                e.update(ids, vecs)
            yield ids, vecs

    def photo_queries(self, count: int, seed: int) -> np.ndarray:
        return self._near(np.random.default_rng((SEED, seed)), count, 0.5)

    def text_queries(self, count: int, seed: int) -> np.ndarray:
        return self._near(np.random.default_rng((SEED, seed)), count, 0.7, gap=1.0)

    def sample(self, count: int) -> np.ndarray:
        """Training vectors: whole blocks spread evenly over the collection."""
        blocks = -(-self.n // BLOCK)
        every = max(1, blocks // max(1, -(-count // BLOCK)))
        return np.concatenate([self.block(b) for b in range(0, blocks, every)])[:count]


VERSION = "bench-synthetic"  # the model version the catalog's rows name


class Stored:
    """The vectors kept in a SQLite catalog as a library keeps them, a chunk at a time."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "catalog.db"
        self.catalog = Catalog(f"sqlite:///{self.path}")
        self.seconds = 0.0

    def put(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        t = time.perf_counter()
        now = "2024-01-01 00:00:00"
        con = sqlite3.connect(self.path)
        con.executemany(
            "INSERT INTO photos (id, path, size, mtime_ns, status, added_at, updated_at, date) "
            "VALUES (?, ?, 1000, 0, 'ok', ?, ?, ?)",
            ((int(i), f"/photos/{i // 1000:05d}/{i:08d}.jpg", now, now, now) for i in ids))
        con.executemany(
            "INSERT INTO embeddings (photo_id, model_version, vector, norm, created_at) "
            "VALUES (?, ?, ?, 1.0, ?)",
            ((int(i), VERSION, v.tobytes(), now) for i, v in zip(ids, vecs, strict=True)))
        con.commit()
        con.close()
        self.seconds += time.perf_counter() - t

    def passing(self, chunks):
        for ids, vecs in chunks:
            self.put(ids, vecs)
            yield ids, vecs


ROUNDS = 3  # each way of searching goes over the queries this many times (the catalog's pages
# are read from disk the first time, from the page cache after)


def _timed(search, queries: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, list]:
    """(recall@10, p50 ms, p95 ms, answers) of ``search(q)`` over the queries, one at a time,
    ROUNDS times round (the times of every round)."""
    times = []
    for _ in range(ROUNDS):
        got = []
        for row in queries:
            t = time.perf_counter()
            got.append(search(row))
            times.append(time.perf_counter() - t)
    return (recall_at(np.stack([ids for _s, ids in got]), truth),
            1000 * float(np.percentile(times, 50)), 1000 * float(np.percentile(times, 95)), got)


def rerank(index, stored: Stored, tests: dict, exact: dict) -> dict:
    """Recall@10 and latency through engine.index.VectorIndex, with and without re-ranking
    the shortlist by the catalog's stored vectors; and how far the re-ranked scores are from
    the exact cosines (the stored vectors of the ids returned, against the query)."""
    plain = VectorIndex.wrap(index, VERSION, use_gpu=False)
    ranked = VectorIndex.wrap(index, VERSION, use_gpu=False)
    ranked.exact = stored_vectors(stored.catalog, VERSION, DIM)
    out: dict = {}
    worst = 0.0
    tuned = index.nprobe
    for kind, q in tests.items():
        for name, idx, probe in (("codes", plain, tuned), ("rerank", ranked, tuned),
                                 ("wider", ranked, min(index.nlist, 4 * tuned))):
            index.nprobe = probe
            r, p50, p95, got = _timed(lambda row, i=idx: i.search(row, 10), q, exact[kind].ids)
            index.nprobe = tuned
            out[f"{name}_{kind}"] = (r, p50, p95)
            if name == "rerank":
                for row, (scores, ids) in zip(q, got, strict=True):
                    found, vecs = stored.catalog.vectors_by_id(VERSION, ids.tolist(), DIM)
                    truth = dict(zip(found.tolist(), (vecs @ row).tolist(), strict=True))
                    worst = max([worst] + [abs(float(s) - truth[int(i)])
                                           for s, i in zip(scores, ids, strict=True)])
    out["max_score_error"] = worst
    out["wider_nprobe"] = min(index.nlist, 4 * tuned)
    return out


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _size(text: str) -> int:
    t = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t.rstrip("km")) * scale)


def run(n: int, memory: int, queries: int, rerank_too: bool = False) -> dict:
    photos = Photos(n)
    plan = plan_for(n, DIM, memory)
    tests = {"photo": photos.photo_queries(queries, 1), "text": photos.text_queries(queries, 2)}
    exact = {k: ExactTop(q) for k, q in tests.items()}
    tuning = photos.text_queries(100, 3)
    out: dict = {"n": n, "kind": plan.kind, "m": plan.m, "nlist": plan.nlist,
                 "estimate_mb": plan.memory(n, DIM) / 2**20}
    with tempfile.TemporaryDirectory(prefix="bench-big-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        sample = photos.sample(training_size(plan, n))
        out["sample_s"] = time.perf_counter() - t
        stored = Stored(work) if rerank_too else None
        chunks = photos.chunks(list(exact.values()))
        t = time.perf_counter()
        index = build_sharded(plan, sample, stored.passing(chunks) if stored else chunks,
                              work / "shards", queries=tuning, ondisk=work / "big.ivfdata",
                              workers=2)
        # train, add, merge, tune (and the truth); filling the catalog is not the index's
        out["build_s"] = time.perf_counter() - t - (stored.seconds if stored else 0.0)
        del sample
        faiss.write_index(index, str(work / "big.faiss"))
        nprobe = index.nprobe
        del index
        gc.collect()
        index = read_ondisk(work / "big.faiss")
        index.nprobe = nprobe
        out["nprobe"] = nprobe
        out["disk_mb"] = ((work / "big.faiss").stat().st_size
                          + (work / "big.ivfdata").stat().st_size) / 2**20
        faiss.omp_set_num_threads(1)
        for kind, q in tests.items():
            got, times = [], []
            for row in q:
                t = time.perf_counter()
                got.append(index.search(row[None], 10)[1][0])
                times.append(time.perf_counter() - t)
            out[f"recall_{kind}"] = recall_at(np.stack(got), exact[kind].ids)
            out[f"p50_{kind}_ms"] = 1000 * float(np.percentile(times, 50))
            out[f"p95_{kind}_ms"] = 1000 * float(np.percentile(times, 95))
        out["filter"] = filter_memory(index, n, tests["text"][:20])
        if stored is not None:
            out["stored_s"] = stored.seconds
            out["rerank"] = rerank(index, stored, tests, exact)
        faiss.omp_set_num_threads(2)
        del index
    out["peak_rss_mb"] = _peak_mb()
    return out


def filter_memory(index, n: int, queries: np.ndarray) -> dict:
    """Bytes one filtered search allocated, the previous way and with a reused IdFilter, for
    a filter holding every other photo; and that both find the same photos."""
    half = np.arange(0, n, 2, dtype=np.int64)
    listed = half.tolist()  # what the catalog hands over, either way
    gc.collect()
    before = _rss_now()
    ids = np.array(listed, dtype=np.int64)
    selector = faiss.IDSelectorBatch(ids)
    sets = [set(ids.tolist()), set(ids.tolist())]  # the ranking's membership tests
    old = _rss_now() - before
    old_ids = [index.search(q[None], 10, params=faiss.SearchParametersIVF(
        sel=selector, nprobe=index.nprobe))[1][0] for q in queries]
    del ids, selector, sets
    gc.collect()
    made = _rss_now()
    f = IdFilter(listed)  # made once for the filter
    once = _rss_now() - made
    f.selector()
    before = _rss_now()
    new_ids = [index.search(q[None], 10, params=faiss.SearchParametersIVF(
        sel=f.selector(), nprobe=index.nprobe))[1][0] for q in queries]
    each = _rss_now() - before
    same = all(np.array_equal(a, b) for a, b in zip(old_ids, new_ids, strict=True))
    return {"old_mb": old / 2**20, "filter_once_mb": once / 2**20,
            "filter_bitmap_mb": f.nbytes / 2**20, "per_query_mb": each / 2**20, "same": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1M,10M", help="comma-separated: 1M,10M or 200k")
    ap.add_argument("--memory", default="1G", help="the index's memory budget (plan_for)")
    ap.add_argument("--queries", type=int, default=100, help="held-out queries of each kind")
    ap.add_argument("--rerank", action="store_true", help="also store the vectors in a catalog "
                    "and search again re-ranking the shortlist with them")
    args = ap.parse_args()
    memory = parse_memory(args.memory)
    rows = []
    for size in args.sizes.split(","):
        r = run(_size(size), memory, args.queries, args.rerank)
        rows.append(r)
        f = r["filter"]
        print(f"{r['n']:>11,} vectors: {r['kind']} m={r['m']} nlist={r['nlist']} "
              f"nprobe={r['nprobe']}  estimate {r['estimate_mb']:.0f} MB, on disk "
              f"{r['disk_mb']:.0f} MB  sample {r['sample_s']:.0f} s, build {r['build_s']:.0f} s"
              f"  recall@10 photo {r['recall_photo']:.3f} text {r['recall_text']:.3f}  "
              f"p50/p95 photo {r['p50_photo_ms']:.2f}/{r['p95_photo_ms']:.2f} ms, text "
              f"{r['p50_text_ms']:.2f}/{r['p95_text_ms']:.2f} ms  peak RSS "
              f"{r['peak_rss_mb']:.0f} MB", flush=True)
        print(f"    filter of half the photos: previous way {f['old_mb']:.1f} MB a search; "
              f"IdFilter {f['filter_once_mb']:.1f} MB once (bitmap {f['filter_bitmap_mb']:.1f} "
              f"MB), then {f['per_query_mb']:.1f} MB a search; same results: {f['same']}",
              flush=True)
    print(f"\nbudget {args.memory}, dimension {DIM}")
    print("| vectors | index | build | on disk | recall@10 photo / text | p50 photo / text "
          "| filter, before → after (a search) | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = r["filter"]
        print(f"| {r['n']:,} | {r['kind']} m={r['m']}, nlist {r['nlist']}, nprobe {r['nprobe']} "
              f"| {r['build_s'] / 60:.1f} min | {r['disk_mb']:.0f} MB "
              f"| {r['recall_photo']:.3f} / {r['recall_text']:.3f} "
              f"| {r['p50_photo_ms']:.1f} / {r['p50_text_ms']:.1f} ms "
              f"| {f['old_mb']:.0f} MB → {f['per_query_mb']:.1f} MB "
              f"| {r['peak_rss_mb']:.0f} MB |")
    ranked = [r for r in rows if "rerank" in r]
    if ranked:
        print(f"\nre-ranked with the catalog's stored vectors (shortlist {shortlist(10)} for "
              "k=10; latency one query at a time, one thread, through engine.index.VectorIndex)")
        print("| vectors | index | search | recall@10 photo / text | p50 photo / text "
              "| p95 photo / text |")
        print("|---|---|---|---|---|---|")
        for r in ranked:
            x = r["rerank"]
            for name, label, probe in (
                    ("codes", "PQ codes only", r["nprobe"]),
                    ("rerank", "re-ranked, exact", r["nprobe"]),
                    ("wider", "re-ranked, 4 times the lists", x["wider_nprobe"])):
                ph, tx = x[f"{name}_photo"], x[f"{name}_text"]
                print(f"| {r['n']:,} | {r['kind']} m={r['m']}, nprobe {probe} | {label} "
                      f"| {ph[0]:.3f} / {tx[0]:.3f} | {ph[1]:.2f} / {tx[1]:.2f} ms "
                      f"| {ph[2]:.2f} / {tx[2]:.2f} ms |")
            print(f"    (largest difference between a re-ranked score and the exact cosine: "
                  f"{x['max_score_error']:.1e}; catalog filled in {r['stored_s']:.0f} s)")


if __name__ == "__main__":
    main()
