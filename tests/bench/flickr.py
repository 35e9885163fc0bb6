"""What the fine-tuning benchmarks share: a library of flickr8k-1k's 1000 photos with the 800
train photos' captions, and a scorer of models on the 200 test photos, which training never
sees."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from engine.captions import import_csv
from engine.evaluate import CaptionedSet, decode_all, load_dataset, recalls
from engine.library import Library

DATASET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "flickr8k-1k"


def captioned_library(data: Path, device: str, prefix: str) -> Library:
    """A fresh library of the data set's photos, captioned on the train split only."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    lib = Library.open(work / "library", device=device)
    t = time.perf_counter()
    lib.add_folders([data / "images"])
    print(f"indexed 1000 photos in {time.perf_counter() - t:.1f} s")
    print(import_csv(lib, data / "captions.csv", split="train").summary())
    return lib


def scorer(lib: Library, data: Path) -> Callable[[object], dict]:
    """Recall of a model on the test split, with its own towers and heads."""
    return scorer_of(lib, load_dataset(data, "test"))


def fold(data: Path, k: int, folds: int = 4) -> tuple[CaptionedSet, list[int]]:
    """Fold k of the train split (every ``folds``-th train photo from the k-th on) as a set to
    score on, and the indices of the other train photos."""
    train = load_dataset(data, "train")
    inside = [i for i in range(len(train.images)) if i % folds == k]
    at = {i: n for n, i in enumerate(inside)}
    keep = np.array([int(o) in at for o in train.caption_image])
    scored = CaptionedSet([train.images[i] for i in inside],
                          [c for c, kept in zip(train.captions, keep, strict=True) if kept],
                          np.array([at[int(o)] for o in train.caption_image[keep]]))
    return scored, [i for i in range(len(train.images)) if i % folds != k]


def scorer_of(lib: Library, scored: CaptionedSet) -> Callable[[object], dict]:
    """Recall of a model on a captioned set of photos, with its own towers and heads."""
    pixels = torch.as_tensor(decode_all(scored.images, lib.model.input_size))

    def score(model) -> dict:
        with torch.inference_mode():
            iv = np.concatenate([model.encode_images(pixels[i : i + 50])
                                 for i in range(0, len(pixels), 50)])
            tv = np.concatenate([model.encode_texts(scored.captions[i : i + 250])
                                 for i in range(0, len(scored.captions), 250)])
        return recalls(iv, tv, scored.caption_image)

    return score
