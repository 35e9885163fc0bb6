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
from typing import TYPE_CHECKING

import numpy as np

from .csvrows import read_image_captions, split_names
from .errors import BadImage, DatasetError
from .imageio import decode_file
from .recall import DIRECTIONS, KS, Recall

if TYPE_CHECKING:
    from .models.base import DualEncoder


@dataclass
class CaptionedSet:
    images: list[Path]
    captions: list[str]
    caption_image: np.ndarray  # index into images for each caption


def load_dataset(folder: Path | str, split: str = "test") -> CaptionedSet:
    folder = Path(folder).expanduser()
    csv_path = folder / "captions.csv"
    if not csv_path.is_file():
        raise DatasetError(f"no captions.csv in {folder} (expected rows of image,caption)")
    image_dir = folder / "images" if (folder / "images").is_dir() else folder
    by_image: dict[str, list[str]] = {}
    rows = read_image_captions(csv_path)  # the reader and split `captions import` uses
    for name, text in rows:
        name, text = name.strip(), text.strip()
        if name and text:
            by_image.setdefault(name, []).append(text)
    chosen = split_names(rows, split)
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


def ranks(image_vecs: np.ndarray, text_vecs: np.ndarray, caption_image: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """0-based ranks, the one definition behind every recall figure and every activation.

    text->image: each caption's own photo among all photos; image->text: each photo's best own
    caption among all captions. What scores strictly higher counts 1, a tie counts 1/2 (the
    middle of the tied places), so two identical photos both rank 0.5 (first) for their
    captions, while a model that maps everything to one point ranks everything in the middle
    and finds nothing, rather than everything. A score that is not a number (a model that
    diverged) is a miss."""
    sims = text_vecs @ image_vecs.T  # (captions, images)
    rows = np.arange(len(caption_image))
    own = sims[rows, caption_image]
    with np.errstate(invalid="ignore"):
        above = (sims > own[:, None]).sum(1)
        tied = (sims == own[:, None]).sum(1) - 1  # not counting the own photo
    t2i = np.where(np.isfinite(own), above + 0.5 * tied, np.inf)
    # image -> text: captions against the image's best own caption
    best = np.full(len(image_vecs), -np.inf, dtype=sims.dtype)
    with np.errstate(invalid="ignore"):  # NaN wins, -inf stays for an uncaptioned image
        np.maximum.at(best, caption_image, own)
        above = (sims > best[None, :]).sum(0)
        tied = (sims == best[None, :]).sum(0)
        own_tied = np.bincount(caption_image, weights=(own == best[caption_image]),
                               minlength=len(image_vecs))
    i2t = np.where(np.isfinite(best), above + 0.5 * (tied - own_tied), np.inf)
    return t2i, i2t


def recalls(image_vecs: np.ndarray, text_vecs: np.ndarray, caption_image: np.ndarray
            ) -> Recall:
    """Recall@K in percent. t2i: the caption's photo in the top K; i2t: any of its captions
    (ranks as ``ranks`` defines them)."""
    t2i_rank, i2t_rank = ranks(image_vecs, text_vecs, caption_image)
    ranked = {"t2i": t2i_rank, "i2t": i2t_rank}
    return Recall(**{f"{d}_r{k}": round(100.0 * float((ranked[d] < k).mean()), 2)
                     for d, _ in DIRECTIONS for k in KS})


def evaluate(model: DualEncoder, dataset: CaptionedSet,
             progress: Callable[[str], None] | None = None) -> dict[str, float]:
    if progress:
        progress(f"embedding {len(dataset.images)} photos")
    iv = embed_images(model, dataset.images)
    if progress:
        progress(f"embedding {len(dataset.captions)} captions")
    tv = embed_texts(model, dataset.captions)
    return {**recalls(iv, tv, dataset.caption_image), "photos": len(dataset.images),
            "captions": len(dataset.captions)}
