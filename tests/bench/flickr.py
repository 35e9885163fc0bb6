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
from engine.evaluate import decode_all, load_dataset, recalls
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
    test = load_dataset(data, "test")
    pixels = torch.as_tensor(decode_all(test.images, lib.model.input_size))

    def score(model) -> dict:
        with torch.inference_mode():
            iv = np.concatenate([model.encode_images(pixels[i : i + 50])
                                 for i in range(0, len(pixels), 50)])
            tv = np.concatenate([model.encode_texts(test.captions[i : i + 250])
                                 for i in range(0, len(test.captions), 250)])
        return recalls(iv, tv, test.caption_image)

    return score
