"""Fine-tuning a library's model: train a new version on the library's captions, save and
register it, and activate it when the options say so (activation itself is the library's).

The library hands down what this needs as a ``TrainingSite``; nothing here imports the library.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..catalog import Catalog
from ..config import LibraryConfig, TrainOptions
from ..errors import LibraryError
from ..evaluate import recalls
from ..indexer import ProgressFn
from ..models import create_model
from ..models.base import DualEncoder
from ..registry import ModelRegistry
from .data import CaptionedPhotos, split_photos
from .decide import judge, photo_scores
from .features import FeatureCache
from .loop import Trainer, TrainEvent, TrainResult, check_options, run, run_key

Activate = Callable[[str, ProgressFn | None, threading.Event | None, DualEncoder | None], None]


@dataclass(frozen=True)
class TrainingSite:
    """What training needs from a library."""

    catalog: Catalog
    registry: ModelRegistry
    config: LibraryConfig
    active_model: Callable[[], DualEncoder]  # the active version's model, as the library has it
    activate: Activate  # (version, progress, cancel, model): re-embed, then switch


def captioned_photos(catalog: Catalog) -> CaptionedPhotos:
    data = CaptionedPhotos([], [], [], [])
    for pid, path, digest, text in catalog.captioned_photo_rows():
        if not data.ids or data.ids[-1] != pid:
            data.ids.append(pid)
            data.paths.append(path)
            data.hashes.append(digest or str(pid))
            data.captions.append([])
        data.captions[-1].append(text)
    return data


def _judged_by(model: DualEncoder, photos: CaptionedPhotos) -> tuple[dict, np.ndarray]:
    """Recall and per-photo scores of a model of another family on the judging photos."""
    from .evaluate import embed_images, embed_texts

    iv = embed_images(model, [Path(p) for p in photos.paths])
    flat = [c for caps in photos.captions for c in caps]
    owner = np.repeat(np.arange(len(photos.ids)), [len(c) for c in photos.captions])
    tv = embed_texts(model, flat)
    return recalls(iv, tv, owner), photo_scores(iv, tv, owner)


def train(site: TrainingSite, options: TrainOptions | None = None,
          cancel: threading.Event | None = None) -> Iterator[TrainEvent]:
    """Train a new model version on the library's captions; maybe activate it (see options)."""
    opt = options or TrainOptions()
    check_options(opt)
    started = time.monotonic()
    config, registry = site.config, site.registry
    parent_rec = registry.active()
    data = captioned_photos(site.catalog)
    split = split_photos(data, opt.holdout, opt.seed)
    train_set = split.train
    same_family = opt.family in (None, parent_rec.family)
    if same_family:
        model = registry.derive(parent_rec, opt, config.device)
    elif opt.family == "openclip":
        raise LibraryError("add a CLIP model first (chikaku models add-clip), then train it")
    else:
        model = create_model({"family": opt.family}, device=config.device)
    model.parent = parent_rec.version
    tower_key = hashlib.blake2b(json.dumps(model.config(), sort_keys=True).encode(),
                                digest_size=8).hexdigest()
    cache = FeatureCache(config.cache_dir / "features" / f"{model.family}-{tower_key}.npz")
    run_dir = config.models_dir / "_runs" / run_key(opt, parent_rec.version, data)
    trainer = Trainer(model, train_set, split.select, opt, cache, run_dir, judge=split.judge)
    outcome = yield from run(trainer, cancel)
    (before, before_scores) = (outcome.judged_before if same_family
                               else _judged_by(site.active_model(), split.judge))
    after, after_scores = outcome.judged_after
    verdict = judge(before_scores, after_scores)
    improved = bool(verdict.better)
    info = {"parent": parent_rec.version, "photos": len(train_set.ids),
            "captions": train_set.caption_count, "held_out_photos": len(split.judge.ids),
            "selection_photos": len(split.select.ids), "options": asdict(opt),
            "before": before, "after": after, "verdict": verdict.as_dict(),
            "seconds": round(time.monotonic() - started, 1)}
    version = model.version
    folder = registry.save(model, info)
    result = TrainResult(version, parent_rec.version, before, after, improved, False,
                         verdict=verdict.reason, steps=opt.steps, photos=len(train_set.ids),
                         captions=train_set.caption_count, seconds=info["seconds"],
                         checkpoint=str(folder))
    if opt.activate == "always" or (opt.activate == "if_better" and improved):
        yield from _activate_events(site.activate, version, model, cancel)
        result.activated = True
    shutil.rmtree(run_dir, ignore_errors=True)
    if result.activated:
        msg = f"{verdict.reason}; it is now the active model"
    elif improved:
        msg = f"{verdict.reason}; it was saved: activate it to use it"
    else:
        msg = f"{verdict.reason}; it was kept but not activated"
    yield TrainEvent("done", opt.steps, opt.steps, recall=after, message=msg, result=result)


def _activate_events(activate: Activate, version: str, model: DualEncoder | None,
                     cancel: threading.Event | None) -> Iterator[TrainEvent]:
    """Run an activation on a thread and stream its re-embedding progress as events.

    If the caller stops listening (Ctrl+C arrives while this waits, or the generator is closed),
    the worker is cancelled and waited for before this returns: what it embedded is kept, and no
    thread is left running the model while the interpreter shuts down (which aborts the process).
    """
    events: queue.Queue = queue.Queue()
    failure: list[BaseException] = []
    cancel = cancel if cancel is not None else threading.Event()

    def progress(p) -> None:
        if p.stage == "indexing":
            events.put(TrainEvent("reembed", p.done, p.total,
                                  message=f"re-embedding photos {p.done}/{p.total}"))

    def work() -> None:
        try:
            activate(version, progress, cancel, model)
        except BaseException as e:  # handed to the caller below
            failure.append(e)
        finally:
            events.put(None)

    worker = threading.Thread(target=work, name="chikaku-activate", daemon=True)
    worker.start()
    last = None
    try:
        while (event := events.get()) is not None:
            if last is None or event.step != last.step:
                yield event
            last = event
    except BaseException:  # KeyboardInterrupt, GeneratorExit: stop the worker, then go on out
        cancel.set()
        _wait_for(worker)
        raise
    worker.join()
    if failure:
        raise failure[0]


def _wait_for(worker: threading.Thread) -> None:
    """Join a cancelled worker; a second Ctrl+C does not abandon it (it stops within a batch)."""
    while worker.is_alive():
        with contextlib.suppress(KeyboardInterrupt):
            worker.join()
