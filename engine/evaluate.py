"""Retrieval quality on a captioned folder: Recall@1/5/10, text->image and image->text.

A data set is a folder holding ``captions.csv`` (``image,caption`` rows, several per image) and
the photos, either beside it or in ``images/``. The split is fixed so numbers compare: sort the
image names; the first 80% are train, the rest test.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .csvrows import read_image_captions
from .errors import BadImage, DatasetError
from .imageio import decode_file
from .models.base import DualEncoder

KS = (1, 5, 10)


@dataclass
class CaptionedSet:
    images: list[Path]
    captions: list[str]
    caption_image: np.ndarray  # index into images for each caption


def load_dataset(folder: Path | str, split: str = "test", train_fraction: float = 0.8
                 ) -> CaptionedSet:
    folder = Path(folder).expanduser()
    csv_path = folder / "captions.csv"
    if not csv_path.is_file():
        raise DatasetError(f"no captions.csv in {folder} (expected rows of image,caption)")
    image_dir = folder / "images" if (folder / "images").is_dir() else folder
    by_image: dict[str, list[str]] = {}
    for name, text in read_image_captions(csv_path):  # the reader `captions import` uses
        name, text = name.strip(), text.strip()
        if name and text:
            by_image.setdefault(name, []).append(text)
    names = sorted(by_image)
    cut = int(round(len(names) * train_fraction))
    chosen = {"train": names[:cut], "test": names[cut:], "all": names}.get(split)
    if chosen is None:
        raise DatasetError(f"unknown split {split!r}: use train, test or all")
    missing = [n for n in chosen if not (image_dir / n).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} photos named in captions.csv are not in {image_dir}, "
                           f"for example {missing[0]}")
    if not chosen:
        raise DatasetError(f"the {split} split of {folder} is empty")
    images, captions, owner = [], [], []
    for i, n in enumerate(chosen):
        images.append(image_dir / n)
        for c in by_image[n]:
            captions.append(c)
            owner.append(i)
    return CaptionedSet(images, captions, np.array(owner, dtype=np.int64))


def decode_all(paths: list[Path], size: int, workers: int | None = None) -> np.ndarray:
    def one(p: Path) -> np.ndarray:
        try:
            return decode_file(p, size=size).pixels
        except BadImage as e:
            raise DatasetError(f"{p}: {e}") from e

    with ThreadPoolExecutor(workers or os.cpu_count() or 2) as pool:
        return np.stack(list(pool.map(one, paths)))


def embed_images(model: DualEncoder, paths: list[Path], batch: int = 64) -> np.ndarray:
    out = []
    for i in range(0, len(paths), batch):
        out.append(model.encode_images(decode_all(paths[i : i + batch], model.input_size)))
    return np.concatenate(out)


def embed_texts(model: DualEncoder, texts: list[str], batch: int = 256) -> np.ndarray:
    return np.concatenate([model.encode_texts(texts[i : i + batch])
                           for i in range(0, len(texts), batch)])


def recalls(image_vecs: np.ndarray, text_vecs: np.ndarray, caption_image: np.ndarray
            ) -> dict[str, float]:
    """Recall@K in percent. t2i: the caption's photo in the top K; i2t: any of its captions.

    A 0-based rank counts what scores strictly higher, so a tie goes to the right answer in both
    directions (two identical photos both rank first for their captions). A score that is not a
    number (a model that diverged) is a miss, never a tie."""
    miss = np.iinfo(np.int64).max
    sims = text_vecs @ image_vecs.T  # (captions, images)
    own = sims[np.arange(len(caption_image)), caption_image]
    t2i_rank = np.where(np.isfinite(own), (sims > own[:, None]).sum(1), miss)
    # image -> text: captions scoring above the image's best own caption
    best = np.full(len(image_vecs), -np.inf, dtype=sims.dtype)
    with np.errstate(invalid="ignore"):  # NaN wins, -inf stays for an uncaptioned image
        np.maximum.at(best, caption_image, own)
    i2t_rank = np.where(np.isfinite(best), (sims > best[None, :]).sum(0), miss)
    out = {}
    for k in KS:
        out[f"t2i_r{k}"] = round(100.0 * float((t2i_rank < k).mean()), 2)
    for k in KS:
        out[f"i2t_r{k}"] = round(100.0 * float((i2t_rank < k).mean()), 2)
    return out


def evaluate(model: DualEncoder, dataset: CaptionedSet,
             progress: Callable[[str], None] | None = None) -> dict[str, float]:
    if progress:
        progress(f"embedding {len(dataset.images)} photos")
    iv = embed_images(model, dataset.images)
    if progress:
        progress(f"embedding {len(dataset.captions)} captions")
    tv = embed_texts(model, dataset.captions)
    result = recalls(iv, tv, dataset.caption_image)
    result.update(photos=len(dataset.images), captions=len(dataset.captions))
    return result
