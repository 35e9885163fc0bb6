"""Fine-tuning step time in one process and shared by two (DistributedDataParallel over gloo, on
the CPU): what a step of the bundled model's heads costs, and what sharing it adds.

    nice -n 10 .venv/bin/python tests/bench/bench_ddp.py [--steps 40] [--batch 256]

The towers are frozen (as in a default fine-tune), so a step runs the heads on cached features;
the features here are random vectors of the towers' sizes, since a step's cost does not depend on
their values. Each configuration runs ``--warmup`` steps, then times ``--steps`` steps (the
leader's wall time, which includes waiting for the other process). One process runs with one
CPU thread and with all of them (``--threads``), two processes with one thread each; the global
batch is the same in every row. The machine's load average is printed first: on shared cores the
multi-threaded row suffers most from other work.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time

import torch
import torch.multiprocessing as mp

from engine.config import TrainOptions
from engine.models import create_model
from engine.training.data import CaptionedPhotos
from engine.training.distributed import World, current
from engine.training.features import FeatureCache, Prepared
from engine.training.loop import Trainer


def _setup(args, world: World) -> tuple[Trainer, Prepared]:
    model = create_model({"family": "bundled"}, device="cpu")
    n = args.photos
    data = CaptionedPhotos(list(range(n)), [""] * n, [str(i) for i in range(n)],
                           [[f"photo {i}"] for i in range(n)])
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, n, model.image_proj.in_features, generator=g)  # as is, mirrored
    texts = [[torch.randn(model.text_proj.in_features, generator=g)] for _ in range(n)]
    opt = TrainOptions(steps=args.warmup + args.steps, batch_size=args.batch, resume=False)
    trainer = Trainer(model, data, data, opt, FeatureCache(None), None, world=world)
    return trainer, Prepared(True, images, data.captions, texts)


def _time(args, world: World) -> list[float]:
    trainer, prep = _setup(args, world)
    times = []
    for step in range(args.warmup + args.steps):
        t = time.perf_counter()
        trainer.step(prep, step)
        times.append(time.perf_counter() - t)
    return times[args.warmup :]


def _worker(rank: int, world_size: int, port: int, args, out) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        out[rank] = _time(args, current())
    finally:
        dist.destroy_process_group()


def _shared(args, world_size: int) -> list[float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(world_size, port, args, out), nprocs=world_size, join=True)
    return out[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40, help="steps timed")
    ap.add_argument("--warmup", type=int, default=5, help="steps run first, not timed")
    ap.add_argument("--batch", type=int, default=256, help="global batch (photos per step)")
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="CPU threads of the second one-process run")
    args = ap.parse_args()
    print(f"bundled model heads, global batch {args.batch}, {args.steps} steps timed after "
          f"{args.warmup}; {os.cpu_count()} CPU cores, load average "
          f"{os.getloadavg()[0]:.1f}; torch {torch.__version__}, gloo")
    print(f"{'processes':>9} {'threads each':>12} {'ms/step median':>14} {'p90':>6} "
          f"{'pairs/s':>8}")
    rows = []
    for threads in dict.fromkeys((1, args.threads)):
        torch.set_num_threads(threads)
        rows.append((1, threads, _time(args, World())))
    rows.append((2, 1, _shared(args, 2)))
    for world_size, threads, times in rows:
        med = statistics.median(times)
        p90 = sorted(times)[int(0.9 * (len(times) - 1))]
        print(f"{world_size:>9} {threads:>12} {med * 1e3:>14.1f} {p90 * 1e3:>6.1f} "
              f"{args.batch / med:>8.0f}")


if __name__ == "__main__":
    main()
