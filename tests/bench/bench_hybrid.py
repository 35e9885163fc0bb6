"""Hybrid search latency (words + meaning, calibrated likely matches) and the full-text index's
size, at 10k and 100k photos (``--sizes`` takes others, e.g. 1000000).

    nice -n 10 .venv/bin/python tests/bench/bench_hybrid.py [--sizes 10000,100000]

The library is synthetic but shaped like a real one: each photo has a path in a dated folder and
one caption, the flickr8k-1k captions in turn (so common words such as "dog" hold for thousands
of photos, as in a captioned library); its vector is the bundled model's embedding of a flickr
photo moved with noise (as in bench_query.py). Rows are written straight into the catalog with
SQLite, so the catalog's triggers fill the full-text index as they do for any write. Only a
sample of 5,000 vectors is stored as catalog rows (the calibration's reference photos come from
the stored rows); the index holds every photo.

Timed end to end through ``Library.search``, 50 text queries (test captions, their words looked
up in the full-text index, the likely matches returned: at most engine.ranking.PAGE), the top 10,
and the top 10 with ``-people`` (an exclusion: one more text encoding, one more k-NN over the
candidates), with the time to encode a query's words alone beside them; then the likely matches
and the exclusion again with each text's vector remembered, which is what search adds to the
text encoder.
Bytes per photo: the full-text tables' pages (SQLite's dbstat) over the photos.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.calibration import Calibration
from engine.evaluate import embed_images, load_dataset
from engine.index import VectorIndex
from engine.library import Library
from engine.vectors import tuning_queries

DATASET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "flickr8k-1k"
STORED_VECTORS = 5000


def synthetic(base: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        v = base[rng.integers(0, len(base), m)] + rng.normal(0, 0.04, (m, base.shape[1]))
        out[s : s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def fill_catalog(db: Path, n: int, captions: list[str], version: str, vecs: np.ndarray) -> None:
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    for table in ("embeddings", "captions", "photos", "roots"):
        con.execute(f"DELETE FROM {table}")
    now = "2024-01-01 00:00:00"
    con.execute("INSERT INTO roots (id, path, added_at, enabled, paused) "
                "VALUES (1, '/home/me/Pictures', ?, 1, 0)", (now,))
    con.executemany(
        "INSERT INTO photos (id, root_id, path, size, mtime_ns, status, added_at, updated_at, "
        "date) VALUES (?, 1, ?, 1000, 0, 'ok', ?, ?, ?)",
        ((i, f"/home/me/Pictures/{2000 + i % 25}/{i // 1000:04d}/IMG_{i:07d}.jpg", now, now, now)
         for i in range(1, n + 1)))
    con.executemany("INSERT INTO captions (photo_id, text, source, created_at) "
                    "VALUES (?, ?, 'bench', ?)",
                    ((i, captions[i % len(captions)], now) for i in range(1, n + 1)))
    sample = np.random.default_rng(1).choice(n, min(STORED_VECTORS, n), replace=False)
    con.executemany("INSERT INTO embeddings (photo_id, model_version, vector, norm, created_at) "
                    "VALUES (?, ?, ?, 1.0, ?)",
                    ((int(i) + 1, version, vecs[i].tobytes(), now) for i in sample))
    con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                "WHERE key = 'vectors_generation'")
    con.commit()
    con.close()


def text_bytes(db: Path) -> int | None:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'photo_text%'"
                           ).fetchone()[0]
    except sqlite3.OperationalError:  # SQLite built without dbstat
        return None
    finally:
        con.close()


def ms(values: list[float], p: float = 50) -> float:
    return float(np.percentile(values, p)) * 1000


def timed(fn, queries) -> list[float]:
    out = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--dataset", default=str(DATASET))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chikaku-bench-hybrid-"))
    lib = Library.open(work / "library", device="cpu")
    model = lib.model
    train, test = load_dataset(args.dataset, "train"), load_dataset(args.dataset, "test")
    base = embed_images(model, test.images)
    texts = test.captions[::20][:50]
    # the default scale, stored as a library without captions would have it
    lib.catalog.put_meta(f"calibration:{model.version}", Calibration(model.version).to_json())
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        vecs = synthetic(base, n)
        db = work / "library" / "catalog.db"
        t = time.perf_counter()
        fill_catalog(db, n, train.captions, model.version, vecs)
        fill = time.perf_counter() - t
        built = VectorIndex.build(model.dim, model.version, np.arange(1, n + 1, dtype=np.int64),
                                  vecs, queries=lambda: tuning_queries(model))
        lib.store.adopt(built, save=False)
        del vecs
        for q in texts[:3]:
            lib.search(q)  # warm up
        sizes: list[int] = []
        likely = timed(lambda q, found=sizes: found.append(len(lib.search(q))), texts)
        top10 = timed(lambda q: lib.search(q, k=10), texts)
        minus = timed(lambda q: lib.search(f"{q} -people", k=10), texts)
        encoder = lib.text_encoder()  # what search encodes words with
        encode = timed(lambda q, e=encoder: e.encode_texts([q]), texts)
        encode_model = timed(lambda q: model.encode_texts([q]), texts)
        # the same searches with each text's vector remembered: what search adds to encoding
        # (less at the mercy of other programs on the cores than the text encoder is)
        with remembered(encoder):
            for q in texts:
                encoder.encode_texts([q])
            encoder.encode_texts(["people"])
            bare = timed(lambda q: lib.search(q), texts)
            bare_minus = timed(lambda q: lib.search(f"{q} -people", k=10), texts)
        size = text_bytes(db)
        rows.append(dict(n=n, fill=fill, likely=likely, top10=top10, minus=minus, encode=encode,
                         encode_model=encode_model,
                         bare=bare, bare_minus=bare_minus, shown=float(np.mean(sizes)),
                         bytes=size / n if size else None, kind=lib.store.loaded.kind))
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\ncores: {os.cpu_count()}, load average {load}; p50 (p95) ms per query, 50 text "
          "queries")
    print(f"{'photos':>9} {'index':>5} {'encode':>15} {'(with torch)':>15} {'likely':>15} "
          f"{'shown':>5} "
          f"{'k=10':>15} {'k=10 -people':>15} | {'likely, encoded':>15} "
          f"{'-people, encoded':>16} | {'FTS B/photo':>11} {'fill s':>7}")
    for r in rows:
        def cell(v, width=15):
            return f"{ms(v):.1f} ({ms(v, 95):.1f})".rjust(width)
        size = "-" if r["bytes"] is None else str(round(r["bytes"]))
        print(f"{r['n']:>9} {r['kind']:>5} {cell(r['encode'])} {cell(r['encode_model'])} "
              f"{cell(r['likely'])} "
              f"{r['shown']:5.0f} {cell(r['top10'])} {cell(r['minus'])} | {cell(r['bare'])} "
              f"{cell(r['bare_minus'], 16)} | {size:>11} {r['fill']:7.1f}")
    print("encode: the words alone, as search encodes them (the bundled model's text side in "
          "NumPy, engine.models.quicktext); with torch: the same through the loaded model")
    print("encoded: each text's vector remembered from the first pass, so the time is the "
          "search's own (full-text lookup, k-NN, fusion, exclusion, catalog rows)")


@contextlib.contextmanager
def remembered(model):
    """Within it, the model encodes each text once and then answers from memory."""
    real, memo = model.encode_texts, {}

    def encode(texts):
        key = tuple(texts)
        if key not in memo:
            memo[key] = real(texts)
        return memo[key]

    model.encode_texts = encode
    try:
        yield
    finally:
        del model.encode_texts


if __name__ == "__main__":
    main()
