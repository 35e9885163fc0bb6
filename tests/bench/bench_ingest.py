"""Catalog ingest: photo rows with their vectors per second, into SQLite and into PostgreSQL.

    nice -n 10 .venv/bin/python tests/bench/bench_ingest.py [--rows 20000] [--batch 1000]
        [--dim 256] [--url postgresql+psycopg://…]

Two write paths, each into a fresh catalog:
  orm   PhotoCatalog.store: the indexer's path, one ORM object a photo and one a vector, a
        transaction a batch;
  bulk  PhotoCatalog.add_many: plain rows, a transaction a batch; COPY on PostgreSQL,
        executemany on SQLite (what cluster ingest of Parquet shards uses).
Both keep the catalog's word index current (triggers), as a real library's catalog does.
Without ``--url`` a throwaway PostgreSQL server is started in a temporary folder (initdb and
pg_ctl, durable commits: fsync on); SQLite is a catalog.db in a temporary folder (WAL,
synchronous=NORMAL, as the desktop uses it). Prints rows/s for each, table last.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.catalog import Catalog  # noqa: E402
from engine.catalog_photos import IndexedPhoto, PhotoCatalog  # noqa: E402


def _rows(n: int, dim: int, root: int) -> list[tuple]:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    now = time.time_ns()
    return [(f"/library/Trip {i // 500}/IMG_{i:07d}.jpg", root, 2_000_000 + i, now + i,
             f"{i:064x}", 4000, 3000, None, datetime(2024, 1 + i % 12, 1 + i % 28),
             vecs[i].tobytes()) for i in range(n)]


def _orm(photos: PhotoCatalog, batch: list[tuple]) -> None:
    photos.store([IndexedPhoto(None, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                               np.frombuffer(r[9], np.float32)) for r in batch])


def _bulk(photos: PhotoCatalog, batch: list[tuple]) -> None:
    photos.add_many(batch)


def measure(url: str, path: str, rows_n: int, batch_n: int, dim: int) -> float:
    cat = Catalog(url)
    photos = PhotoCatalog(cat, "bench")
    root = photos.register_folders(["/library"])["/library"]
    rows = _rows(rows_n, dim, root)
    write = _orm if path == "orm" else _bulk
    t = time.perf_counter()
    for i in range(0, rows_n, batch_n):
        write(photos, rows[i : i + batch_n])
    wall = time.perf_counter() - t
    counts = cat.status_counts("bench")
    cat.close()
    assert counts.photos == counts.embedded == rows_n, counts
    return rows_n / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--url", help="a PostgreSQL server's URL, whose databases are made here "
                                  "(default: a throwaway server)")
    args = ap.parse_args()

    server = None
    if args.url is None:
        from tests.pgserver import INSTALL, PgServer, server_bin

        bindir = server_bin()
        if bindir is None:
            sys.exit(INSTALL)
        server = PgServer(bindir, fsync=True)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for path in ("orm", "bulk"):
                sqlite_url = f"sqlite:///{Path(tmp) / f'{path}.db'}"
                pg_url = server.new_database() if server else _fresh_database(args.url)
                for name, url in (("SQLite", sqlite_url), ("PostgreSQL", pg_url)):
                    rate = measure(url, path, args.rows, args.batch, args.dim)
                    print(f"{name:10s} {path:4s}: {rate:8.0f} rows/s", flush=True)
                    results.append((name, path, rate))
    finally:
        if server is not None:
            server.stop()
    print(f"\n{args.rows} photos with {args.dim}-float vectors, {args.batch} a transaction")
    print(f"{'catalog':10s} | {'path':4s} | rows/s")
    for name, path, rate in results:
        print(f"{name:10s} | {path:4s} | {rate:.0f}")


def _fresh_database(url: str) -> str:
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    name = "bench_" + uuid.uuid4().hex[:12]
    with psycopg.connect(make_url(url).set(drivername="postgresql")
                         .render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return make_url(url).set(database=name).render_as_string(hide_password=False)


if __name__ == "__main__":
    main()
