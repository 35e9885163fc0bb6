"""Does fine-tuning switch to a model trained on noise? The activation rule, measured.

    .venv/bin/python tests/bench/bench_activation.py [--caption-seeds 6] [--train-seeds 3]

Builds a library of the 800 flickr8k-1k train photos with the bundled model. For each caption
seed it captions every photo twice over, in turn: with 3 of its 5 real captions (the seed picks
which), and with 3 captions of random letters (the seed draws them); for each training seed it
fine-tunes with the default options (`activate="never"`, so every run starts from the same
model) and records the decision. Two rules are printed side by side:

- old rule: the state kept was better than the start on the photos it was chosen on;
- new rule (engine.training.decide): judged on other held-out photos, the paired-bootstrap lower bound
  of the gain is above zero.

The test photos are never used: this measures the decision, not the model.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.config import TrainOptions
from engine.evaluate import load_dataset
from engine.library import Library
from engine.training.loop import score


def _captions(dataset: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with open(dataset / "captions.csv", newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["image"], []).append(row["caption"])
    return out


def _noise(rng: np.random.Generator) -> str:
    letters = list("abcdefghijklmnopqrstuvwxyz")
    return " ".join("".join(rng.choice(letters, int(rng.integers(3, 9))))
                    for _ in range(int(rng.integers(4, 10))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(Path(__file__).resolve().parents[3] / "shared" /
                                             "datasets" / "flickr8k-1k"))
    ap.add_argument("--caption-seeds", type=int, default=6)
    ap.add_argument("--train-seeds", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    data = Path(args.dataset)
    train_images = load_dataset(data, "train").images
    real = _captions(data)
    folder = Path(tempfile.mkdtemp(prefix="chikaku-bench-activation-"))
    (folder / "photos").mkdir()
    for p in train_images:
        shutil.copy2(p, folder / "photos" / p.name)
    lib = Library.open(folder / "library", device=args.device)
    t = time.perf_counter()
    lib.add_folders([folder / "photos"])
    ids = {p.name: lib.photo_by_path(folder / "photos" / p.name).id for p in train_images}
    print(f"indexed {len(ids)} train photos in {time.perf_counter() - t:.0f} s")

    rows = []
    for kind in ("real", "noise"):
        for cseed in range(args.caption_seeds):
            rng = np.random.default_rng(1000 + cseed)
            for name, pid in ids.items():
                if kind == "real":
                    texts = [real[name][i] for i in sorted(rng.choice(5, 3, replace=False))]
                else:
                    texts = [_noise(rng) for _ in range(3)]
                lib.set_captions(pid, texts)
            for tseed in range(args.train_seeds):
                t = time.perf_counter()
                evals = []
                r = lib.train(TrainOptions(seed=tseed, activate="never", resume=False),
                              progress=lambda ev, evals=evals: evals.append(score(ev.recall))
                              if ev.kind == "eval" and ev.recall else None)
                info = {m.version: m for m in lib.models()}[r.version].info
                v = info["verdict"]
                old = max(evals[1:]) > evals[0]
                rows.append((kind, cseed, tseed, old, r.improved, score(r.before),
                             score(r.after), v["gain"], v["lower"], v["photos"],
                             time.perf_counter() - t))
                print(f"{kind:5} captions {cseed} train {tseed}: old rule "
                      f"{'activates' if old else 'refuses'}, new rule "
                      f"{'activates' if r.improved else 'refuses'}; judged on {v['photos']} "
                      f"photos, mean recall {score(r.before):.1f} -> {score(r.after):.1f}, "
                      f"gain {v['gain']:+.1f} (lower bound {v['lower']:+.1f}), "
                      f"{time.perf_counter() - t:.0f} s", flush=True)
    lib.close()
    print()
    runs = args.caption_seeds * args.train_seeds
    print(f"activation decisions over {args.caption_seeds} caption seeds x {args.train_seeds} "
          "training seeds (flickr8k-1k train split, bundled model, default options)")
    print(f"{'captions':<22} {'old rule':>10} {'new rule':>10} {'mean gain':>10} "
          f"{'mean lower bound':>17}")
    for kind, label in (("real", "real (3 of 5 each)"), ("noise", "random letters")):
        sel = [r for r in rows if r[0] == kind]
        print(f"{label:<22} {sum(r[3] for r in sel):>5} / {runs:<2} {sum(r[4] for r in sel):>5}"
              f" / {runs:<2} {np.mean([r[7] for r in sel]):>+10.1f} "
              f"{np.mean([r[8] for r in sel]):>+17.1f}")


if __name__ == "__main__":
    main()
