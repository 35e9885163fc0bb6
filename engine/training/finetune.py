"""Fine-tuning a library's model: train a new version on the library's captions, judge it against
the active one, save and register it. Activating it is a separate call (the library's), made
when the options and the judgement say so.

The library hands down what this needs as a ``TrainingSite``; nothing here imports the library.
Under torchrun, the leader (rank 0) runs ``train`` and every other process ``follow``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..catalog import Catalog
from ..catalog_feedback import FeedbackCatalog
from ..config import LibraryConfig, TrainOptions
from ..errors import LibraryError
from ..evaluate import recalls
from ..models import create_model, default_config
from ..models.base import DualEncoder
from ..progress import Emit, silent
from ..registry import ModelRegistry
from .data import CaptionedPhotos, HardNegatives, Split, fold, split_photos
from .decide import judge, photo_scores
from .distributed import current
from .features import FeatureCache
from .loop import Trainer, TrainResult, check_options, fit_to_data, follow, run, run_key
from .stems import StemStore


@dataclass(frozen=True)
class TrainingSite:
    """What training needs from a library."""

    catalog: Catalog
    registry: ModelRegistry
    config: LibraryConfig
    active_model: Callable[[], DualEncoder]  # the active version's model, as the library has it


def captioned_photos(catalog: Catalog) -> CaptionedPhotos:
    data = CaptionedPhotos([], [], [], [])
    for pid, path, digest, text in catalog.captioned_photo_rows():
        if not data.ids or data.ids[-1] != pid:
            data.ids.append(pid)
            data.paths.append(path)
            data.hashes.append(digest or str(pid))
            data.captions.append([])
        data.captions[-1].append(text)
    data.hard = hard_negatives(catalog)
    return data


def hard_negatives(catalog: Catalog) -> HardNegatives | None:
    """The photos marked wrong for queries (engine.feedback), or None when there are none."""
    rows = FeedbackCatalog(catalog).wrong_photos()
    if not rows:
        return None
    photos = CaptionedPhotos([], [], [], [])
    at: dict[int, int] = {}
    by_caption: dict[str, list[int]] = {}
    for query, pid, path, digest in rows:
        if pid not in at:
            at[pid] = len(photos.ids)
            photos.ids.append(pid)
            photos.paths.append(path)
            photos.hashes.append(digest or str(pid))
            photos.captions.append([])
        by_caption.setdefault(fold(query), []).append(at[pid])
    return HardNegatives(photos, by_caption)


def _judged_by(model: DualEncoder, photos: CaptionedPhotos) -> tuple[dict, np.ndarray]:
    """Recall and per-photo scores of a model of another family on the judging photos."""
    from ..evaluate import embed_images, embed_texts

    iv = embed_images(model, [Path(p) for p in photos.paths])
    flat = [c for caps in photos.captions for c in caps]
    owner = np.repeat(np.arange(len(photos.ids)), [len(c) for c in photos.captions])
    tv = embed_texts(model, flat)
    return recalls(iv, tv, owner), photo_scores(iv, tv, owner)


def train(site: TrainingSite, options: TrainOptions | None = None, emit: Emit = silent,
          cancel: threading.Event | None = None) -> tuple[TrainResult, DualEncoder]:
    """Train a new model version on the library's captions, judge, save and register it (not
    activated: ``result.activated`` is False). Returns the result and the trained model."""
    opt = options or TrainOptions()
    check_options(opt)
    started = time.monotonic()
    config, registry = site.config, site.registry
    parent_rec = registry.active()
    data = captioned_photos(site.catalog)
    split, model, features, store, opt = _start(site, opt, data)
    cache = FeatureCache(features)
    train_set = split.train
    same_family = opt.family in (None, parent_rec.family)
    run_dir = config.models_dir / "_runs" / run_key(opt, parent_rec.version, data)
    trainer = Trainer(model, train_set, split.select, opt, cache, run_dir, judge=split.judge,
                      world=current(), store=store)
    outcome = run(trainer, emit, cancel)
    (before, before_scores) = (outcome.judged_before if same_family
                               else _judged_by(site.active_model(), split.judge))
    after, after_scores = outcome.judged_after
    verdict = judge(before_scores, after_scores)
    improved = bool(verdict.better)
    info = {"parent": parent_rec.version, "photos": len(train_set.ids),
            "captions": train_set.caption_count, "held_out_photos": len(split.judge.ids),
            "selection_photos": len(split.select.ids), "options": asdict(opt),
            "before": dict(before), "after": dict(after), "verdict": verdict.as_dict(),
            "seconds": round(time.monotonic() - started, 1)}
    version = model.version
    folder = registry.save(model, info)
    result = TrainResult(version, parent_rec.version, before, after, improved, False,
                         verdict=verdict.reason, steps=opt.steps, photos=len(train_set.ids),
                         captions=train_set.caption_count, seconds=info["seconds"],
                         checkpoint=str(folder))
    shutil.rmtree(run_dir, ignore_errors=True)
    return result, model


def _start(site: TrainingSite, opt: TrainOptions, data: CaptionedPhotos
           ) -> tuple[Split, DualEncoder, Path, StemStore | None, TrainOptions]:
    """The split, the model to train, its feature cache's file, the precomputed features
    (``opt.features``) and the options fitted to the number of training photos: the same in
    every process, so that all of them take the same steps."""
    parent_rec = site.registry.active()
    split = split_photos(data, opt.holdout, opt.seed)
    if opt.family in (None, parent_rec.family):
        model = site.registry.derive(parent_rec, opt, site.config.device)
    elif opt.family == "openclip":
        raise LibraryError("add a CLIP model first (chikaku models add-clip), then train it")
    else:
        model = create_model(default_config(opt.family), device=site.config.device)
    model.parent = parent_rec.version
    # what this model cannot train from is told before a missing store: it is the reason that
    # stays once the features are made
    store = open_features(opt.features, model) if opt.features else None
    return (split, model, site.config.cache_dir / "features" / f"{tower_key(model)}.npz", store,
            fit_to_data(opt, len(split.train.ids), model.family))


def tower_key(model: DualEncoder) -> str:
    """Names the towers whose frozen parts make a model's stems: cached and precomputed
    features are those of one key."""
    digest = hashlib.blake2b(json.dumps(model.config(), sort_keys=True).encode(),
                             digest_size=8).hexdigest()
    return f"{model.family}-{digest}"


def open_features(folder: str | Path, model: DualEncoder) -> StemStore:
    """The store of precomputed features in ``folder`` (a features job's folder, or the store
    itself), checked to be of this model's towers."""
    path = Path(folder).expanduser()
    if not (path / "meta.json").is_file() and (path / "features" / "meta.json").is_file():
        path = path / "features"
    if any(getattr(model, k, 0) for k in ("unlock_image", "unlock_text")):
        raise LibraryError("precomputed features are the towers' whole outputs: training with "
                           "unlocked tower blocks computes its own (leave --features out)")
    if not model.cacheable():
        raise LibraryError(f"a {model.family} model trains its whole towers, so their features "
                           "change at every step: it cannot train from precomputed ones (leave "
                           "--features out)")
    store = StemStore.open(path)
    if store.tower != tower_key(model):
        raise LibraryError(f"the features in {path} were made with other towers "
                           f"({store.tower or 'unknown'}) than this model's ({tower_key(model)}): "
                           "make them again (`chikaku cluster features`)")
    return store


def follow_training(site: TrainingSite, options: TrainOptions | None = None,
                    cancel: threading.Event | None = None) -> None:
    """Take part in a fine-tune that another process leads (torchrun's rank 0, running
    ``train``): the same model and split, this process's slice of every batch. The leader judges,
    saves and registers; this returns when it stops, and raises Cancelled if any process is
    cancelled."""
    opt = options or TrainOptions()
    check_options(opt)
    split, model, features, store, opt = _start(site, opt, captioned_photos(site.catalog))
    cache = FeatureCache(None)  # read once the leader has written the features (see follow)
    cache.path = features
    follow(Trainer(model, split.train, split.select, opt, cache, None, world=current(),
                   store=store), cancel)


def should_activate(options: TrainOptions, result: TrainResult) -> bool:
    return options.activate == "always" or (options.activate == "if_better" and result.improved)


def closing_message(result: TrainResult) -> str:
    """The judgement and what became of the new version, in one sentence."""
    if result.activated:
        return f"{result.verdict}; it is now the active model"
    if result.improved:
        return f"{result.verdict}; it was saved: activate it to use it"
    return f"{result.verdict}; it was kept but not activated"
