"""Cluster indexing on a private local Ray: throughput by number of workers, and what a job
costs whatever its size.

    .venv/bin/python tests/bench/bench_cluster.py [--photos 200] [--workers 1 2] [--model bundled]

For each worker count N, on flickr8k-1k photos (symlinked, never copied into the repository):
  - start:  starting the private Ray of N CPUs (``--cluster local:N``), until its Jobs API answers
  - plan:   scan and diff, manifest written
  - job:    submit until the job has succeeded (decode tasks + embedding actors + shards)
  - fixed:  the same job over a single photo: Ray Data's start, actor start and model load
  - ingest: shards into the catalog and index, and the finishing pass
  - stop:   the private Ray stopped and every process of it gone
and photos/s of the job alone ((photos - 1) / (job - fixed): the marginal rate) and of the
whole command. The local indexer (``Library.add_folders``) on the same photos is the baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DATASET = ROOT.parent / "shared" / "datasets" / "flickr8k-1k"
TINY = {"family": "scratch", "dim": 32, "width": 16, "input_size": 32, "seed": 0}


def folder_of(base: Path, name: str, count: int, offset: int = 0) -> Path:
    folder = base / name
    folder.mkdir(parents=True)
    for src in sorted((DATASET / "images").iterdir())[offset : offset + count]:
        os.symlink(src, folder / src.name)
    return folder


def open_lib(path: Path, model: str):
    from engine.library import Library

    return Library.open(path, device="cpu", default_model=TINY if model == "tiny" else None)


def one_run(base: Path, workers: int, photos: Path, single: Path, model: str) -> dict:
    from engine.cluster.coordinator import ingest, plan
    from engine.cluster.submit import LocalRay, submit, wait

    out: dict[str, float] = {}
    lib = open_lib(base / f"lib{workers}", model)
    _ = lib.model  # loaded before timing, as a coordinator that indexes often has it
    job_dir, small_dir = base / f"job{workers}", base / f"small{workers}"
    try:
        t = time.perf_counter()
        ray = LocalRay(base / f"ray{workers}", workers)
        address = ray.__enter__()
        out["start"] = time.perf_counter() - t
        try:
            t = time.perf_counter()
            plan(lib, [single], small_dir)
            submit(address, small_dir, sys.executable)
            wait(address, small_dir, poll=0.1)
            out["fixed"] = time.perf_counter() - t
            t = time.perf_counter()
            made = plan(lib, [photos], job_dir)
            out["plan"] = time.perf_counter() - t
            t = time.perf_counter()
            submit(address, job_dir, sys.executable)
            wait(address, job_dir, poll=0.1)
            out["job"] = time.perf_counter() - t
        finally:
            t = time.perf_counter()
            ray.stop()
            out["stop"] = time.perf_counter() - t
        t = time.perf_counter()
        report = ingest(lib, job_dir)
        out["ingest"] = time.perf_counter() - t
        assert report.embedded == made.total, report
        out["photos"] = made.total
    finally:
        lib.close()
    return out


def local_run(base: Path, photos: Path, model: str) -> float:
    lib = open_lib(base / "local", model)
    try:
        _ = lib.model
        t = time.perf_counter()
        lib.add_folders([photos])
        return time.perf_counter() - t
    finally:
        lib.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--model", choices=("bundled", "tiny"), default="bundled")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        base = Path(tmp)
        photos = folder_of(base, "photos", args.photos)
        single = folder_of(base, "single", 1, offset=args.photos)
        local = local_run(base, photos, args.model)
        rows = [(w, one_run(base, w, photos, single, args.model)) for w in args.workers]
    n = args.photos
    print(f"cores: {os.cpu_count()}  model: {args.model}  photos: {n}")
    print(f"local indexer (Library.add_folders): {local:.1f} s, {n / local:.1f} photos/s")
    print("workers  start  fixed   plan    job  ingest  stop  job photos/s  marginal photos/s  "
          "whole photos/s")
    for w, r in rows:
        whole = r["start"] + r["plan"] + r["job"] + r["ingest"] + r["stop"]
        # too close to the fixed cost to tell (the noise of a shared machine): not printed
        extra = r["job"] - r["fixed"]
        marginal = f"{(n - 1) / extra:17.1f}" if extra >= 1.0 else f"{'-':>17}"
        print(f"{w:7d}  {r['start']:5.1f}  {r['fixed']:5.1f}  {r['plan']:5.1f}  {r['job']:5.1f}"
              f"  {r['ingest']:6.1f}  {r['stop']:4.1f}  {n / r['job']:12.1f}  {marginal}"
              f"  {n / whole:14.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
