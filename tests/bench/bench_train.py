"""Fine-tuning benchmark on flickr8k-1k: wall time, throughput, and what each change buys.

    .venv/bin/python tests/bench/bench_train.py [--seeds 0,1,2] [--only default,crops,...]

Builds a fresh library of the 1000 photos with the bundled model, imports the captions of the
800 train photos only, then trains each variant once per seed (the seed also draws the held-out
share, so the spread includes which photos were trained on). A variant's first run computes the
cached tower features it needs (the cost a person pays once); later runs reuse them. Every model
is scored with its own towers and heads on the 200 test photos (1000 captions), which training
never sees. Prints a table last: mean ± standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from engine.config import TrainOptions
from engine.models import load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flickr import DATASET, captioned_library, scorer  # noqa: E402

VARIANTS = {
    "default": ("default (locked, flips, weight average)", dict()),
    "noema": ("  without the weight average", dict(ema=0.0)),
    "noflip": ("  without flips", dict(flip=False)),
    "crops": ("  + 2 crops", dict(crops=2)),
    "text1": ("  + last text layer unlocked", dict(unlock_text=1)),
    "image1": ("  + last image block unlocked", dict(unlock_image=1)),
    "both": ("  + last text layer and image block", dict(unlock_text=1,
                                                               unlock_image=1)),
    "crops_text1": ("  + 2 crops + last text layer unlocked", dict(crops=2, unlock_text=1)),
    "wise": ("  + WiSE-FT alpha 0.8", dict(wise_alpha=0.8)),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(DATASET))
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--seeds", default="0,1,2", help="train each variant once per seed")
    ap.add_argument("--only", default=",".join(VARIANTS),
                    help=f"variants to run, from: {','.join(VARIANTS)}")
    args = ap.parse_args()
    data = Path(args.dataset)
    lib = captioned_library(data, args.device, "chikaku-bench-train-")
    test_recall = scorer(lib, data)

    seeds = [int(x) for x in args.seeds.split(",")]
    rows = [("zero-shot (no training)", [test_recall(lib.model)], None, None, None)]
    for name in args.only.split(","):
        label, kw = VARIANTS[name]
        scores, walls = [], []
        rate = None
        for seed in seeds:
            opts = TrainOptions(activate="never", resume=False, seed=seed, **kw)
            t = time.perf_counter()
            marks = {}

            def listen(ev, marks=marks) -> None:
                if ev.kind == "eval" and ev.done == 0:
                    marks["first"] = time.perf_counter()  # features ready, before the 1st step
                if ev.kind == "step":
                    marks["last"], marks["steps"] = time.perf_counter(), ev.done

            result = lib.train(opts, progress=listen)
            walls.append(time.perf_counter() - t)
            rate = marks["steps"] * opts.batch_size / (marks["last"] - marks["first"])
            scores.append(test_recall(load_checkpoint(result.checkpoint, device=args.device)))
        rows.append((label, scores, walls[0], float(np.mean(walls[1:])) if len(walls) > 1
                     else None, rate))
    print()
    print(f"test split (200 photos, 1000 captions), mean ± sd over seeds {args.seeds}; "
          "first run of a variant computes its cached features")
    print(f"{'variant':<42} {'t2i R@1':>11} {'R@5':>5} {'R@10':>11} {'i2t R@1':>7} "
          f"{'R@10':>5} {'1st s':>6} {'next s':>6} {'pairs/s':>7}")
    for label, sc, first_wall, next_wall, rate in rows:
        def ms(key: str, sc=sc) -> str:
            v = [r[key] for r in sc]
            return f"{np.mean(v):5.1f}±{np.std(v):4.1f}" if len(v) > 1 else f"{v[0]:11.1f}"

        def m(key: str, sc=sc) -> float:
            return float(np.mean([r[key] for r in sc]))

        w1 = f"{first_wall:6.0f}" if first_wall else "     -"
        w2 = f"{next_wall:6.0f}" if next_wall else "     -"
        pr = f"{rate:7.0f}" if rate else "      -"
        print(f"{label:<42} {ms('t2i_r1'):>11} {m('t2i_r5'):5.1f} {ms('t2i_r10'):>11} "
              f"{m('i2t_r1'):7.1f} {m('i2t_r10'):5.1f} {w1} {w2} {pr}")


if __name__ == "__main__":
    main()
