"""Feedback benchmark on flickr8k-1k: does a fine-tune that learns from a person's marks beat
the same fine-tune without them?

    .venv/bin/python tests/bench/bench_feedback.py [--seeds 0,1,2] [--queries 20]

Builds a library of the 1000 photos with the bundled model and imports the captions of the 800
train photos only. A simulated person then searches for 20 train captions (one each of 20 train
photos spread over the split) with the base model and marks, in the top 20, the photo the caption
was written for as right (when it is there) and the two best-ranked other train photos as wrong
(test photos are never marked). Each
seed fine-tunes twice, without the marks and with them (the same options, the same split);
every model is scored on the 200 test photos (1000 captions), which neither the training nor the
marks ever saw. Prints mean ± standard deviation over the seeds, and for the 20 marked queries
themselves how far each model puts the captioned photo above the photos marked wrong (the mean
cosine margin, with the model's own embeddings, before any re-ranking by the marks).

``--seen``: the person goes on searching (the candidates in a fixed random order) until the
photo searched for was in the top 20 for ``--queries`` of the queries, and marks only those.

``--captioned N``: a person who has captioned only N of the train photos (spread over the
split; the others' captions are taken away after the import), and who searches for what the
other photos show: the marked queries are captions of uncaptioned train photos, so a right
mark teaches a pair that the library's captions do not hold. Without it every train photo is
captioned, and a right mark repeats one of its photo's captions.

``--fold K`` (0 to 3): scored on fold K of the train split (every fourth train photo from the
K-th, whose captions are taken away) instead of the test photos; the captioned and marked photos
come from the other three folds. This is where settings are chosen: the test photos stay out.

``--unlike T``: the person marks as wrong only photos that plainly do not show what was asked
for: none of the photo's own five captions is as close to the query as T (cosine of the base
model's text side, which is MiniLM's sentence embedding). Without it every photo other than the
captioned one counts as wrong, as flickr8k's captions assume, though some show the same thing.

``--judge T``: the person marks as right every photo in the top 20 that shows what was asked
for, not only the one the caption was written for: one of the photo's own five captions is at
least as close to the query as T (the same cosine as ``--unlike``). With ``--seen``, a query
counts when any right photo was in the top 20.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from engine.config import TrainOptions
from engine.evaluate import decode_all, load_dataset
from engine.models import load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flickr import DATASET, captioned_library, fold, scorer, scorer_of  # noqa: E402

KEYS = ("t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r10")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(DATASET))
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--captioned", type=int, default=None,
                    help="train photos left with their captions (default: all of them)")
    ap.add_argument("--seen", action="store_true",
                    help="marks only for queries whose photo the person saw in the top 20 "
                         "(searching until there are --queries of them)")
    ap.add_argument("--fold", type=int, default=None, choices=range(4),
                    help="score on this fold of the train split instead of the test photos")
    ap.add_argument("--unlike", type=float, default=None, metavar="T",
                    help="mark wrong only photos none of whose captions is this close to the "
                         "query")
    ap.add_argument("--judge", type=float, default=None, metavar="T",
                    help="mark right every photo in the top 20 one of whose captions is this "
                         "close to the query (not only the photo the caption was written for)")
    args = ap.parse_args()
    data = Path(args.dataset)
    lib = captioned_library(data, args.device, "chikaku-bench-feedback-")
    train = load_dataset(data, "train")
    captions_of: dict[int, list[str]] = {}
    for caption, owner in zip(train.captions, train.caption_image, strict=True):
        captions_of.setdefault(int(owner), []).append(caption)
    if args.fold is None:
        test_recall, scored = scorer(lib, data), "test split (200 photos, 1000 captions)"
        candidates = np.arange(len(train.images))
    else:  # the fold's photos lose their captions and are only scored on
        held, others = fold(data, args.fold)
        for path in held.images:
            lib.set_captions(lib.photo_by_path(path).id, [])
        test_recall = scorer_of(lib, held)
        scored = (f"fold {args.fold} of the train split ({len(held.images)} photos, "
                  f"{len(held.captions)} captions)")
        candidates = np.array(others)
    # only train photos outside the scored ones are marked: those stay unseen by the marks too
    markable = {lib.photo_by_path(train.images[i]).id: int(i) for i in candidates}
    if args.captioned is not None:  # the rest of the train photos lose their captions
        kept = set(candidates[np.linspace(0, len(candidates) - 1, args.captioned)
                              .round().astype(int)])
        for i in candidates:
            if i not in kept:
                lib.set_captions(lib.photo_by_path(train.images[i]).id, [])
        candidates = np.array([i for i in candidates if i not in kept])
        print(f"{len(kept)} train photos keep their captions; {len(candidates)} have none")

    # the simulated person's marks, made with the base model
    picks = candidates[np.linspace(0, len(candidates) - 1, args.queries).round().astype(int)]
    if args.seen:  # every candidate in turn, spread over the split, until enough are found
        picks = candidates[np.random.default_rng(0).permutation(len(candidates))]

    def unit(texts: list[str]) -> np.ndarray:
        v = lib.model.encode_texts(texts)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    judged: dict[int | str, np.ndarray] = {}  # photos' own captions and queries, embedded once

    def closest(query: str, photo: int) -> float:
        """How close the nearest of the photo's own captions is to the query."""
        if photo not in judged:
            judged[photo] = unit(captions_of[markable[photo]])
        if query not in judged:
            judged[query] = unit([query])[0]
        return float((judged[photo] @ judged[query]).max())

    def plainly_wrong(query: str, photo: int) -> bool:
        return args.unlike is None or closest(query, photo) < args.unlike

    def shows_it(query: str, photo: int, source: int) -> bool:
        return photo == source or (args.judge is not None and photo in markable
                                   and closest(query, photo) >= args.judge)

    marks = []
    for i in picks:
        query = captions_of[int(i)][0]
        source = lib.photo_by_path(train.images[i]).id
        top = [h.photo_id for h in lib.search(query, k=20)]
        right = [p for p in top if shows_it(query, p, source)]
        wrong = [p for p in top if p not in right and p in markable
                 and plainly_wrong(query, p)][:2]
        if args.seen and not right:
            continue
        marks.append((query, right, wrong, top.index(source) + 1 if source in top else None))
        if len(marks) == args.queries:
            break
    found = sum(1 for m in marks if m[3] is not None)
    print(f"{len(marks)} queries: the captioned photo in the top 20 for {found}; "
          f"{sum(len(m[1]) for m in marks)} photos marked right, "
          f"{sum(len(m[2]) for m in marks)} wrong")

    marked_paths = {pid: lib.photo(pid).path for m in marks for pid in [*m[1], *m[2]]}
    pixels = {pid: torch.as_tensor(decode_all([Path(p)], lib.model.input_size))[0]
              for pid, p in marked_paths.items()}

    def marked_margin(model) -> float:
        """Mean over the marked queries of mean cos(query, right) - mean cos(query, wrong)."""
        out = []
        with torch.inference_mode():
            for query, right, wrong, _rank in marks:
                if not right or not wrong:
                    continue
                t = model.encode_texts([query])[0]
                v = model.encode_images(torch.stack([pixels[p] for p in right + wrong]))
                v = v / np.linalg.norm(v, axis=1, keepdims=True)
                c = v @ (t / np.linalg.norm(t))
                out.append(float(c[: len(right)].mean() - c[len(right):].mean()))
        return float(np.mean(out))

    seeds = [int(s) for s in args.seeds.split(",")]
    arms: dict[str, list[dict]] = {"without marks": [], "with marks": []}
    margins: dict[str, list[float]] = {k: [] for k in arms}
    walls: dict[str, list[float]] = {k: [] for k in arms}
    taken: set[int] = set()  # steps the fine-tunes took (fitted to the photos: --epochs)
    for arm in arms:
        if arm == "with marks":
            for query, right, wrong, _rank in marks:
                for p in right:
                    lib.mark(query, p, True)
                for p in wrong:
                    lib.mark(query, p, False)
        for seed in seeds:
            opts = TrainOptions(activate="never", resume=False, seed=seed, steps=args.steps)
            t = time.perf_counter()
            result = lib.train(opts)
            walls[arm].append(time.perf_counter() - t)
            taken.add(result.steps)
            model = load_checkpoint(result.checkpoint, device=args.device)
            arms[arm].append(test_recall(model))
            margins[arm].append(marked_margin(model))
            print(f"{arm}, seed {seed}: t2i R@10 {arms[arm][-1]['t2i_r10']:.1f} "
                  f"({walls[arm][-1]:.0f} s)", flush=True)
    print()
    held = "every train photo" if args.captioned is None else f"{args.captioned} train photos"
    print(f"{scored}, mean ± sd over seeds {args.seeds}; "
          f"{'/'.join(map(str, sorted(taken)))} steps (at most {args.steps}), captions on {held}, "
          f"marks on {len(marks)} train captions")
    print(f"{'fine-tune':<16}" + "".join(f"{k:>13}" for k in KEYS) + f"{'margin':>14}"
          + f"{'s/run':>8}")
    for arm, scores in arms.items():
        cells = "".join(f"{np.mean([r[k] for r in scores]):7.1f}±{np.std([r[k] for r in scores]):4.1f}"
                        for k in KEYS)
        margin = f"{np.mean(margins[arm]):8.3f}±{np.std(margins[arm]):.3f}"
        print(f"{arm:<16}{cells}{margin:>14}{np.mean(walls[arm]):8.0f}")
    print(f"(margin: on the {len(marks)} marked train queries, the mean cosine of the photos "
          "marked right minus that of the photos marked wrong, each model's own embeddings)")
    diff = [b["t2i_r10"] - a["t2i_r10"] for a, b in zip(arms["without marks"],
                                                          arms["with marks"], strict=True)]
    print("t2i R@10, with marks minus without, per seed: "
          + ", ".join(f"{d:+.1f}" for d in diff))
    print(f"mean {np.mean(diff):+.2f}; better with marks on {sum(d > 0 for d in diff)} of "
          f"{len(diff)} seeds")


if __name__ == "__main__":
    main()
