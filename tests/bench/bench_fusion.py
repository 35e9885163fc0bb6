"""How to fuse the full-text index's ranking with the model's: measured on a captioned library.

    nice -n 10 .venv/bin/python tests/bench/bench_fusion.py [--library DIR]

The 200 photos of the flickr8k-1k test split are indexed with the bundled model and given their
first four captions; each photo's fifth caption, never imported, is a query whose answer is that
photo. Each fusion orders every photo and is judged by the answer's rank: MRR, recall at 1, 10
and 20. The fusions:

- meaning alone: the query vector's cosine;
- tiers: photos whose words hold all the query's content words first, by cosine, then the rest by
  cosine;
- reciprocal rank fusion (k = 60) of the cosine ranking with the BM25 ranking of the photos holding
  all the content words, or any of them;
- all words first, then RRF: the photos holding all the content words first, the rest after
  them, each part in the order of RRF with any-word BM25; and Library.search's own order, which
  should be the same (judged on the captions without a double quote in them).

``--library`` reuses a library made by an earlier run (its photos and captions already there).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
from pathlib import Path

import numpy as np

from engine.captions import import_csv
from engine.csvrows import read_image_captions, split_names
from engine.library import Library
from engine.query import Term
from engine.ranking import content_words

DATASET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "flickr8k-1k"
RRF_K = 60


def library(where: Path | None, dataset: Path) -> tuple[Library, dict[str, int], dict]:
    rows = read_image_captions(dataset / "captions.csv")
    names = split_names(rows, "test")
    captions: dict[str, list[str]] = {}
    for n, t in rows:
        if n.strip() in names and t.strip():
            captions.setdefault(n.strip(), []).append(t.strip())
    base = where or Path(tempfile.mkdtemp(prefix="chikaku-bench-fusion-"))
    folder = base / "photos"
    fresh = not folder.is_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        if not (folder / n).exists():
            shutil.copy2(dataset / "images" / n, folder / n)
    lib = Library.open(base / "library", device="cpu")
    if fresh or lib.status().photos < len(names):
        lib.add_folders([folder])
    if lib.captioned_photo_count() < len(names):
        table = base / "captions.csv"
        with open(table, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["image", "caption"])
            out.writerows((n, c) for n in names for c in captions[n][:4])
        import_csv(lib, table)
    ids = {n: lib.photo_by_path(folder / n).id for n in names}
    return lib, ids, captions


def rrf(*rankings: list[int]) -> list[int]:
    score: dict[int, float] = {}
    for ranking in rankings:
        for r, i in enumerate(ranking):
            score[i] = score.get(i, 0.0) + 1.0 / (RRF_K + r + 1)
    return sorted(score, key=lambda i: -score[i])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", type=Path)
    ap.add_argument("--dataset", type=Path, default=DATASET)
    args = ap.parse_args()
    lib, ids, captions = library(args.library, args.dataset)
    n = len(ids)
    ranks: dict[str, list[int]] = {}
    for name, target in ids.items():
        query = captions[name][4]
        vec = lib.query_vector([Term(1.0, "text", query)], lib.model)
        _, vector = lib.index.search(vec, n)
        vector = vector.tolist()
        words = content_words(query)
        every = lib.catalog.photos_with_words([words])
        some = lib.catalog.photos_with_words([[w] for w in words])
        inside = set(every)
        orders = {
            "meaning alone": vector,
            "tiers (all words first)": [i for i in vector if i in inside]
                                       + [i for i in vector if i not in inside],
            "RRF with all-words BM25": rrf(vector, every),
            "RRF with any-word BM25": rrf(vector, some),
            "all words first, then RRF": [i for i in rrf(vector, some) if i in inside]
                                         + [i for i in rrf(vector, some) if i not in inside],
        }
        if '"' not in query:  # the engine's own order, the caption quoted as one text term
            orders["Library.search"] = [h.photo_id for h in lib.search(f'"{query}"', k=n)]
        for how, order in orders.items():
            ranks.setdefault(how, []).append(order.index(target) + 1 if target in order else n)
    print(f"model {lib.model.version}: {n} photos with their first 4 captions, each one's 5th "
          "caption a query")
    print(f"{'fusion':28s} {'MRR':>6} {'R@1':>6} {'R@10':>6} {'R@20':>6}")
    for how, r in ranks.items():
        r = np.asarray(r)
        print(f"{how:28s} {np.mean(1 / r):6.3f} {np.mean(r <= 1):6.3f} {np.mean(r <= 10):6.3f} "
              f"{np.mean(r <= 20):6.3f}")
    lib.close()


if __name__ == "__main__":
    main()
