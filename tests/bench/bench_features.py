"""Training's tower features made on a private local Ray (`chikaku cluster features`) against
computing them in the training process, and what training then holds and pays per step.

    .venv/bin/python tests/bench/bench_features.py [--photos 200] [--crops 1] [--workers 2]

On flickr8k-1k photos (symlinked, never copied into the repository) with their captions, in a
library of the bundled model (locked towers):
  - in process: the features training computes itself (``prepare``), all views of every photo
    and every caption, and the memory their tensors take;
  - cluster:    starting the private Ray, planning, the job (decoding tasks, tower actors,
    shards), merging the shards into the store, stopping the Ray; the store's size on disk;
  - a training step (the heads, batch 256) reading its batch from memory or from the store's
    memory maps: median and p90 of 40 steps after 5;
and the bytes training holds for the photos' stems in each case (tensors, or row numbers).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DATASET = ROOT.parent / "shared" / "datasets" / "flickr8k-1k"


def step_times(model, prep, steps: int = 45) -> list[float]:
    from engine.config import TrainOptions
    from engine.training.data import CaptionedPhotos
    from engine.training.features import FeatureCache
    from engine.training.loop import Trainer

    empty = CaptionedPhotos([], [], [], [])
    trainer = Trainer(model, empty, empty, TrainOptions(batch_size=256), FeatureCache(None), None)
    out = []
    for s in range(steps):
        t = time.perf_counter()
        trainer.step(prep, s)
        out.append(time.perf_counter() - t)
    return out[5:]


def held_bytes(prep) -> int:
    import torch

    from engine.training.stems import CaptionRows, Rows

    if isinstance(prep.images, Rows):
        return (prep.images.rows.nbytes + prep.text_stems.rows.rows.nbytes
                + sum(s.nbytes for s in prep.images.sources[1:]))
    assert not isinstance(prep.text_stems, CaptionRows)
    return (prep.images.nbytes
            + sum(t.nbytes for caps in prep.text_stems for t in caps if isinstance(t, torch.Tensor)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--crops", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    import torch

    from engine.cluster.features import build, plan_features
    from engine.cluster.submit import LocalRay, submit, wait
    from engine.library import Library
    from engine.training.features import FeatureCache, prepare
    from engine.training.finetune import captioned_photos, open_features

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        base = Path(tmp)
        folder = base / "photos"
        folder.mkdir()
        names = sorted(p.name for p in (DATASET / "images").iterdir())[: args.photos]
        for name in names:
            os.symlink(DATASET / "images" / name, folder / name)
        caps = base / "captions.csv"
        with open(DATASET / "captions.csv", newline="") as f, open(caps, "w", newline="") as out:
            w = csv.writer(out)
            w.writerow(["image", "caption"])
            wanted = set(names)
            for row in csv.DictReader(f):
                if row["image"] in wanted:
                    w.writerow([row["image"], row["caption"]])
        lib = Library.open(base / "lib", device="cpu")
        try:
            from engine.captions import import_csv

            lib.add_folders([folder])
            import_csv(lib, caps)
            data = captioned_photos(lib.catalog)
            model = lib.model
            t = time.perf_counter()
            memory = prepare(model, data, FeatureCache(None), True, args.crops)
            local_s = time.perf_counter() - t

            job = base / "job"
            times = {}
            t = time.perf_counter()
            ray = LocalRay(base / "ray", args.workers)
            address = ray.__enter__()
            times["start"] = time.perf_counter() - t
            try:
                t = time.perf_counter()
                made = plan_features(lib, job, crops=args.crops)
                times["plan"] = time.perf_counter() - t
                t = time.perf_counter()
                submit(address, job, sys.executable)
                wait(address, job, poll=0.1)
                times["job"] = time.perf_counter() - t
            finally:
                t = time.perf_counter()
                ray.stop()
                times["stop"] = time.perf_counter() - t
            t = time.perf_counter()
            report = build(lib, job)
            times["merge"] = time.perf_counter() - t
            disk = sum(p.stat().st_size for p in (job / "features").iterdir())
            store = open_features(job, model)
            stored = prepare(model, data, FeatureCache(None), True, args.crops, store=store)
            fast = step_times(model, memory)
            mapped = step_times(model, stored)
        finally:
            lib.close()
    views = len(made.extra["views"])
    print(f"cores: {os.cpu_count()}  load average {os.getloadavg()[0]:.1f}  torch threads 1  "
          f"model: bundled (locked towers)")
    print(f"{report.photos} photos x {views} views, {report.captions} captions; "
          f"store {disk / 1e6:.1f} MB on disk")
    print(f"in process (prepare): {local_s:6.1f} s")
    whole = sum(times.values())
    print(f"cluster local:{args.workers}:   {whole:6.1f} s  (start {times['start']:.1f}, plan "
          f"{times['plan']:.1f}, job {times['job']:.1f}, merge {times['merge']:.1f}, stop "
          f"{times['stop']:.1f})")
    print("training reads   held for the stems   ms/step median    p90")
    for label, prep, steps in (("memory", memory, fast), ("store", stored, mapped)):
        q = statistics.quantiles(steps, n=10)
        print(f"{label:15s}  {held_bytes(prep) / 1e6:15.2f} MB  {statistics.median(steps) * 1e3:14.1f}"
              f"  {q[-1] * 1e3:5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
