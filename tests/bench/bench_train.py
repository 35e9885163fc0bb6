"""Fine-tuning benchmark on flickr8k-1k: wall time, throughput, and what each change buys.

    .venv/bin/python tests/bench/bench_train.py [--dataset ../shared/datasets/flickr8k-1k]

Builds a fresh library of the 1000 photos with the bundled model, imports the captions of the
800 train photos only, then trains. The first run starts with no cached tower features (the
cost a person pays once); the variants after it reuse the cache. Each variant's model is scored
on the 200 test photos (1000 captions), which training never sees. Prints a table last.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from engine.captions import import_csv
from engine.evaluate import decode_all, load_dataset, recalls
from engine.library import Library
from engine.models import load_checkpoint
from engine.train import TrainOptions

VARIANTS = [
    ("known recipe: lr 2e-3, 20% held out, eval every 20", dict(lr=2e-3, holdout=0.2,
                                                                 eval_every=20)),
    ("lr 5e-4", dict(lr=5e-4, holdout=0.2, eval_every=10)),
    ("lr 5e-4, 10% held out (default)", dict()),
    ("default without flip augmentation", dict(flip=False)),
    ("default + WiSE-FT alpha 0.8", dict(wise_alpha=0.8)),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(Path(__file__).resolve().parents[3] / "shared" /
                                             "datasets" / "flickr8k-1k"))
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--quick", action="store_true", help="only the default recipe")
    args = ap.parse_args()
    data = Path(args.dataset)
    work = Path(tempfile.mkdtemp(prefix="chikaku-bench-train-"))
    lib = Library.open(work / "library", device=args.device)
    t = time.perf_counter()
    lib.add_folders([data / "images"])
    print(f"indexed 1000 photos in {time.perf_counter() - t:.1f} s")
    print(import_csv(lib, data / "captions.csv", split="train").summary())
    test = load_dataset(data, "test")
    base = lib.model
    with torch.inference_mode():
        feats = base.image_features(torch.as_tensor(decode_all(test.images, 224))).float()
        tfeats = base.text_features(test.captions).float()

    def test_recall(model) -> dict:
        with torch.no_grad():
            return recalls(model.image_head(feats).float().cpu().numpy(),
                           model.text_head(tfeats).float().cpu().numpy(),
                           test.caption_image)

    rows = [("zero-shot (no training)", test_recall(base), None, None)]
    variants = [VARIANTS[2]] if args.quick else VARIANTS
    for i, (label, kw) in enumerate(variants):
        opts = TrainOptions(activate="never", resume=False, **kw)
        t = time.perf_counter()
        pairs = 0
        for ev in lib.train(opts):
            if ev.kind == "step":
                pairs = ev.step * opts.batch_size
        wall = time.perf_counter() - t
        result = ev.result
        model = load_checkpoint(result.checkpoint, device=args.device)
        rows.append((label + (" [cold cache]" if i == 0 else ""), test_recall(model), wall,
                     pairs / wall))
    print()
    print(f"{'variant':<58} {'t2i R@1':>7} {'R@5':>6} {'R@10':>6} {'i2t R@1':>7} {'R@10':>6}"
          f" {'wall s':>7} {'pairs/s':>8}")
    for label, r, wall, pps in rows:
        w = f"{wall:7.1f}" if wall else "      -"
        p = f"{pps:8.0f}" if pps else "       -"
        print(f"{label:<58} {r['t2i_r1']:7.1f} {r['t2i_r5']:6.1f} {r['t2i_r10']:6.1f} "
              f"{r['i2t_r1']:7.1f} {r['i2t_r10']:6.1f} {w} {p}")


if __name__ == "__main__":
    main()
