"""Choose the bundled model's zero-shot recipe on folds of the 800 TRAIN photos (never the test).

    nice -n 10 .venv/bin/python tests/bench/bench_prompt_folds.py [--folds 5]

Candidates: class prompts ("names": "a photo of a {class}"; "gloss": timm's class description
with its WordNet gloss), centring (the 1000 prompt embeddings' mean taken away or not) and the
softmax temperature (a grid), for each image tower. The 800 train photos are cut into folds of
160 photos (with their 800 captions each); every fold is a gallery of its own, as the 200-photo
test split is. A recipe's score is text->image (R@1 + R@5 + R@10) / 3, averaged over the folds
and over both towers (the recipe is one for the family, whichever tower a library uses). Prints
every candidate's fold means, the best first, and the recipe picked; RECIPE in
engine/models/bundled.py is what it picks.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zero_shot_data as zd  # noqa: E402

from engine.evaluate import recalls  # noqa: E402

TEMPERATURES = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)


def fold_recalls(points: np.ndarray, texts: np.ndarray, owner: np.ndarray,
                 folds: list[np.ndarray]) -> list[dict[str, float]]:
    out = []
    for photos in folds:
        local = np.full(len(points), -1)
        local[photos] = np.arange(len(photos))
        keep = np.isin(owner, photos)
        out.append(recalls(points[photos], texts[keep], local[owner[keep]]))
    return out


def score(r: dict[str, float]) -> float:
    return (r["t2i_r1"] + r["t2i_r5"] + r["t2i_r10"]) / 3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(zd.DATASET))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="draws which photos go in which fold")
    args = ap.parse_args()
    train = zd.split(Path(args.dataset), "train")
    order = np.random.default_rng(args.seed).permutation(len(train.images))
    folds = [np.sort(f) for f in np.array_split(order, args.folds)]
    models = {name: zd.tower(name) for name in zd.towers()}
    any_model = next(iter(models.values()))
    texts = torch.nn.functional.normalize(
        torch.from_numpy(zd.text_features(any_model, train, "train")), dim=-1).numpy()
    prompts = {kind: any_model.prompt_embeddings(kind) for kind in ("names", "gloss")}
    features = {name: zd.image_features(m, train, "train") for name, m in models.items()}

    rows = []
    for kind, centre, temp in itertools.product(("names", "gloss"), (False, True), TEMPERATURES):
        ct = prompts[kind] - prompts[kind].mean(0, keepdim=True) if centre else prompts[kind]
        per_tower = {}
        for name, m in models.items():
            pts = zd.zero_shot(m, features[name], ct, temp)
            per_tower[name] = fold_recalls(pts, texts, train.caption_image, folds)
        rows.append(((kind, centre, temp), per_tower))

    def mean_score(per_tower) -> float:
        return float(np.mean([score(r) for rs in per_tower.values() for r in rs]))

    rows.sort(key=lambda row: -mean_score(row[1]))
    print(f"\nzero-shot recipes on {args.folds} folds of the 800 train photos "
          f"({len(folds[0])} photos, ~{5 * len(folds[0])} captions each; fold seed {args.seed})")
    print("score: text->image (R@1 + R@5 + R@10) / 3, mean over folds (± sd over folds)")
    head = f"{'prompts':<7} {'centred':<7} {'temp':>5} {'score':>6}"
    for name in models:
        short = zd.SHORT[name]
        head += f" | {short + ' score':>14} {'t2i R@1':>7} {'R@5':>5} {'R@10':>5} {'i2t R@10':>8}"
    print(head)
    for (kind, centre, temp), per_tower in rows:
        line = f"{kind:<7} {'yes' if centre else 'no':<7} {temp:5.1f} {mean_score(per_tower):6.1f}"
        for rs in per_tower.values():
            s = [score(r) for r in rs]
            m = {k: np.mean([r[k] for r in rs]) for k in rs[0]}
            line += (f" | {np.mean(s):8.1f}±{np.std(s):4.1f} {m['t2i_r1']:7.1f} "
                     f"{m['t2i_r5']:5.1f} {m['t2i_r10']:5.1f} {m['i2t_r10']:8.1f}")
        print(line)
    kind, centre, temp = rows[0][0]
    print(f"\npicked: prompts={kind!r}, centre={centre}, temperature={temp} "
          "(engine/models/bundled.py RECIPE)")


if __name__ == "__main__":
    main()
