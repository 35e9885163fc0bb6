"""Cached tower features: the frozen part of each tower is run once per photo view and caption
and its output kept (in memory and on disk, keyed by content), so a training step runs only what
learns."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..evaluate import decode_all
from ..models.base import DualEncoder
from .data import CaptionedPhotos
from .stems import CaptionRows, Rows, StemStore


class FeatureCache:
    """Tower features on disk, keyed by content: a photo's hash or a caption's text."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, np.ndarray] = {}
        self.dirty = False
        if path is not None and path.is_file():
            try:
                with np.load(path) as z:
                    self.data = {k: z[k] for k in z.files}
            except (OSError, ValueError):
                self.data = {}  # a damaged cache is only lost time

    def get(self, key: str) -> np.ndarray | None:
        return self.data.get(key)

    def put(self, key: str, value: np.ndarray) -> None:
        # Feature vectors are kept exactly; the larger maps and token states of partly unlocked
        # towers in half precision (half the memory and disk, far below the training noise).
        self.data[key] = value.astype(np.float16) if value.ndim > 1 else value
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(tmp, **self.data)
            os.replace(tmp, self.path)
        except OSError:  # a full disk: the features are computed again next time
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self.dirty = False


def text_key(text: str) -> str:
    return "t" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


CROP_SCALE = (0.5, 1.0)  # share of the photo's area a crop view keeps
CROP_DECODE = 1.3  # crop views are cut from a decode this much larger than the model's input


def views(flip: bool, crops: int) -> list[str]:
    """Names of the cached views of a training photo: "" the photo as search sees it, "f" its
    mirror image, "c0", "c0f", ... random crops (and their mirror images)."""
    out = [""] + (["f"] if flip else [])
    for j in range(crops):
        out += [f"c{j}"] + ([f"c{j}f"] if flip else [])
    return out


def _crop(pixels: np.ndarray, key: str, size: int) -> torch.Tensor:
    """A random-resized crop of one (S, S, 3) image, the same every time for the same key."""
    seed = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    rng = np.random.default_rng(seed)
    full = pixels.shape[0]
    area = rng.uniform(*CROP_SCALE) * full * full
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    w = min(full, int(round(math.sqrt(area * ratio))))
    h = min(full, int(round(math.sqrt(area / ratio))))
    y, x = int(rng.integers(0, full - h + 1)), int(rng.integers(0, full - w + 1))
    part = torch.as_tensor(pixels[y : y + h, x : x + w]).permute(2, 0, 1)[None].float()
    out = torch.nn.functional.interpolate(part, size=(size, size), mode="bilinear",
                                          antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)


def crop_decode_size(size: int) -> int:
    return int(round(size * CROP_DECODE))


@torch.inference_mode()
def view_stems(model: DualEncoder, pixels: torch.Tensor, large: np.ndarray | None,
               hashes: list[str], view: str) -> np.ndarray:
    """Stems of one view (see ``views``) of a batch of photos: ``pixels`` decoded at the model's
    input size, ``large`` at ``crop_decode_size`` (for crop views), ``hashes`` their content."""
    if view.startswith("c"):
        x = torch.stack([_crop(large[j], f"i{h}{view.rstrip('f')}", model.input_size)
                         for j, h in enumerate(hashes)])
    else:
        x = pixels
    if view.endswith("f"):
        x = x.flip(2)
    return model.image_stem(x).float().cpu().numpy()


@torch.inference_mode()
def image_stems(model: DualEncoder, data: CaptionedPhotos, cache: FeatureCache,
                names: list[str], batch: int = 32, read: Callable[[int], None] | None = None
                ) -> torch.Tensor:
    """(views, photos, ...) outputs of the image tower's frozen part, cached by content.
    ``read(n)``: n more photos are read (those already cached at once, then batch by batch)."""
    keys = [[f"i{h}{v}" for v in names] for h in data.hashes]
    missing = [i for i, ks in enumerate(keys) if any(cache.get(k) is None for k in ks)]
    size = model.input_size
    crops = any(v.startswith("c") for v in names)
    if read is not None:
        read(len(keys) - len(missing))
    for s in range(0, len(missing), batch):
        chunk = missing[s : s + batch]
        paths = [Path(data.paths[i]) for i in chunk]
        pixels = torch.as_tensor(decode_all(paths, size))
        large = decode_all(paths, crop_decode_size(size)) if crops else None
        for v in names:
            stems = view_stems(model, pixels, large, [data.hashes[i] for i in chunk], v)
            for i, f in zip(chunk, stems, strict=True):
                cache.put(f"i{data.hashes[i]}{v}", f)
        if read is not None:
            read(len(chunk))
    with torch.inference_mode(False):  # training takes gradients through what comes next
        return torch.stack([torch.from_numpy(np.stack([cache.get(ks[n]) for ks in keys]))
                            .float() for n in range(len(names))])


@torch.inference_mode()
def text_stems(model: DualEncoder, texts: list[str], cache: FeatureCache,
               batch: int = 256) -> list[torch.Tensor]:
    keys = [text_key(t) for t in texts]
    missing = [i for i, k in enumerate(keys) if cache.get(k) is None]
    for s in range(0, len(missing), batch):
        chunk = missing[s : s + batch]
        stems = model.text_stem([texts[i] for i in chunk])
        for i, f in zip(chunk, stems, strict=True):
            cache.put(keys[i], f.float().cpu().numpy())
    with torch.inference_mode(False):
        return [torch.from_numpy(cache.get(k)).float() for k in keys]


def stored_image_stems(model: DualEncoder, data: CaptionedPhotos, cache: FeatureCache,
                       names: list[str], store: StemStore,
                       read: Callable[[int], None] | None = None) -> Rows:
    """(views, photos) rows of image stems: the store's, and those it lacks computed here."""
    keys = [f"i{h}{v}" for v in names for h in data.hashes]
    rows = store.rows("image", keys).reshape(len(names), len(data.hashes))
    lacking = np.flatnonzero((rows < 0).any(axis=0))
    if read is not None:
        read(len(data.hashes) - len(lacking))
    sources = [store.stems["image"]]
    if len(lacking):
        made = image_stems(model, data.subset(lacking), cache, names, read=read).numpy()
        rows[:, lacking] = (len(sources[0]) + np.arange(made.shape[0] * made.shape[1])
                            .reshape(made.shape[:2]))
        sources.append(made.reshape(-1, *made.shape[2:]))
    return Rows(rows, sources)


def stored_text_stems(model: DualEncoder, captions: list[list[str]], cache: FeatureCache,
                      store: StemStore) -> CaptionRows:
    """Every photo's caption stems as rows: the store's, and those it lacks computed here."""
    flat = [c for caps in captions for c in caps]
    rows = store.rows("text", [text_key(t) for t in flat])
    sources = [store.stems["text"]]
    lacking = np.flatnonzero(rows < 0)
    if len(lacking):
        made = torch.stack(text_stems(model, [flat[i] for i in lacking], cache)).numpy()
        rows[lacking] = len(sources[0]) + np.arange(len(lacking))
        sources.append(made)
    return CaptionRows(rows, [len(c) for c in captions], sources)


@dataclass
class Prepared:
    """Training inputs: cached stems (frozen tower parts) or decoded pixels (trainable towers).
    Stems read from a store of precomputed features are rows of its maps (``stems.Rows``),
    indexed as the tensors they stand for."""

    cached: bool
    images: torch.Tensor | Rows  # stems (views, N, ...) or pixels (N, H, W, 3) uint8
    texts: list[list[str]]
    # per photo, per caption
    text_stems: list[list[torch.Tensor]] | CaptionRows = field(default_factory=list)
    # hard negatives (photos marked wrong for a caption's words): their stems (1, M, ...) or
    # pixels (M, H, W, 3), and per photo, per caption, the indices of its own
    hard_images: torch.Tensor | Rows | None = None
    hard_of: list[list[list[int]]] = field(default_factory=list)


def prepare(model: DualEncoder, data: CaptionedPhotos, cache: FeatureCache, flip: bool,
            crops: int = 0, read: Callable[[int], None] | None = None,
            store: StemStore | None = None) -> Prepared:
    """Training inputs for these photos; ``read(n)`` as photos are read (see image_stems).
    With a ``store`` of precomputed features, the stems it holds are read from it as needed and
    only those it lacks are computed (and cached) here."""
    hard_of = [[data.hard_for(i, c) for c in range(len(caps))]
               for i, caps in enumerate(data.captions)]
    used = data.hard is not None and any(js for per in hard_of for js in per)
    if model.cacheable() and store is not None:
        names = views(flip, crops)
        hard = stored_image_stems(model, data.hard.photos, cache, [""], store) if used else None
        return Prepared(True, stored_image_stems(model, data, cache, names, store, read),
                        data.captions, stored_text_stems(model, data.captions, cache, store),
                        hard, hard_of if used else [])
    if model.cacheable():
        stems = image_stems(model, data, cache, views(flip, crops), read=read)
        flat = text_stems(model, [c for caps in data.captions for c in caps], cache)
        per, at = [], 0
        for caps in data.captions:
            per.append(flat[at : at + len(caps)])
            at += len(caps)
        hard = image_stems(model, data.hard.photos, cache, [""]) if used else None
        return Prepared(True, stems, data.captions, per, hard, hard_of if used else [])
    pixels = torch.as_tensor(decode_all([Path(p) for p in data.paths], model.input_size))
    if read is not None:
        read(len(data.paths))
    hard = (torch.as_tensor(decode_all([Path(p) for p in data.hard.photos.paths],
                                       model.input_size)) if used else None)
    return Prepared(False, pixels, data.captions, hard_images=hard,
                    hard_of=hard_of if used else [])
