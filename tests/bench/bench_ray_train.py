"""Fine-tuning step time under Ray Train (``chikaku train --ray local:N``) against torchrun
(``--distributed``), with 1 and 2 processes: the same per-process training under either launcher,
so what differs is what launching costs.

    nice -n 10 .venv/bin/python tests/bench/bench_ray_train.py [--steps 40] [--batch 256]

A step is bench_ddp.py's: the bundled model's heads on cached features (random vectors of the
towers' sizes), the global batch the same in every row, one CPU thread per process. Each run
times ``--steps`` steps after ``--warmup`` on the first process (whose wall time includes waiting
for the other), and the whole run from launch to result:
  - torchrun: ``python -m torch.distributed.run --standalone --nproc-per-node N`` running this
    file, each process joining with ``engine.training.distributed.start`` (gloo);
  - Ray Train: ``engine.cluster.train.train_on_ray(..., "local:N", workers=N)``: a private local
    Ray of N CPUs started and stopped, a TorchTrainer of N CPU workers (gloo).
The machine's load average is printed first: on shared cores every row suffers from other work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tests.bench.bench_ddp import _time  # noqa: E402

MARK = "chikaku-bench-times:"


def _rank(args) -> dict | None:
    """One process's part, in the process group its launcher set up: the first one's times."""
    from engine.training.distributed import joined

    torch.set_num_threads(1)
    world, _ = joined()
    times = _time(args, world)
    return {"times": times} if world.leader else None


def _under_torchrun(args) -> None:
    from engine.training.distributed import start, stop

    start("cpu")
    try:
        out = _rank(args)
    finally:
        stop()
    if out is not None:
        print(MARK + json.dumps(out["times"]), flush=True)


def _torchrun(args, n: int) -> tuple[list[float], float]:
    t = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         str(n), __file__, "--under-torchrun", *_passed(args)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - t
    if run.returncode != 0:
        sys.exit(f"torchrun failed:\n{run.stderr[-3000:]}")
    line = next(x for x in run.stdout.splitlines() if x.startswith(MARK))
    return json.loads(line[len(MARK):]), wall


def _ray(args, n: int) -> tuple[list[float], float]:
    from importlib import import_module

    from engine.cluster.train import train_on_ray

    rank = import_module("tests.bench.bench_ray_train")._rank  # the workers import it by name
    with tempfile.TemporaryDirectory(prefix="chikaku-bench-ray-") as work:
        t = time.perf_counter()
        out = train_on_ray(rank, args, f"local:{n}", Path(work), workers=n)
        return out["times"], time.perf_counter() - t


def _passed(args) -> list[str]:
    return [x for k in ("steps", "warmup", "batch", "photos")
            for x in (f"--{k}", str(getattr(args, k)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40, help="steps timed")
    ap.add_argument("--warmup", type=int, default=5, help="steps run first, not timed")
    ap.add_argument("--batch", type=int, default=256, help="global batch (photos per step)")
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--under-torchrun", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.under_torchrun:
        _under_torchrun(args)
        return
    print(f"bundled model heads, global batch {args.batch}, {args.steps} steps timed after "
          f"{args.warmup}, 1 thread per process; {os.cpu_count()} CPU cores, load average "
          f"{os.getloadavg()[0]:.1f}; torch {torch.__version__}, gloo")
    print(f"{'launcher':<10} {'processes':>9} {'ms/step median':>14} {'p90':>6} {'pairs/s':>8} "
          f"{'run s':>6}")
    for n in args.workers:
        for name, launch in (("torchrun", _torchrun), ("Ray Train", _ray)):
            times, wall = launch(args, n)
            med = statistics.median(times)
            p90 = sorted(times)[int(0.9 * (len(times) - 1))]
            print(f"{name:<10} {n:>9} {med * 1e3:>14.1f} {p90 * 1e3:>6.1f} "
                  f"{args.batch / med:>8.0f} {wall:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
