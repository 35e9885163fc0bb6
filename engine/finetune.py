"""A library's models: train a new version, activate one (re-embedding in the background while
search keeps the old vectors), go back, list and delete.

Every model version is a checkpoint folder ``models/<version>/`` (safetensors + JSON config) and a
row in the catalog; the bundled zero-shot model needs no folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import delete, select

from .catalog import Caption, Embedding, ModelRecord, Photo
from .decide import judge, photo_scores
from .errors import Cancelled, LibraryError
from .evaluate import recalls
from .index import _file_name
from .indexer import Indexer, ProgressFn
from .models import create_model, load_checkpoint, save_checkpoint
from .models.base import DualEncoder
from .train import (
    CaptionedPhotos,
    FeatureCache,
    Trainer,
    TrainEvent,
    TrainOptions,
    TrainResult,
    check_options,
    run,
    run_key,
    split_photos,
)

if TYPE_CHECKING:
    from .library import Library


@dataclass
class ModelInfo:
    version: str
    family: str
    parent: str | None
    active: bool
    created_at: datetime
    info: dict


def list_models(lib: Library) -> list[ModelInfo]:
    with lib.catalog.session() as s:
        recs = s.scalars(select(ModelRecord).order_by(ModelRecord.created_at)).all()
        return [ModelInfo(r.version, r.family, r.parent, r.active, r.created_at, r.info)
                for r in recs]


def load_record(rec: ModelRecord, device: str) -> DualEncoder:
    if rec.path:
        return load_checkpoint(Path(rec.path), device=device)
    return create_model(json.loads(rec.config_json), device=device)


def derive(parent: ModelRecord, opt: TrainOptions, device: str) -> DualEncoder:
    """A trainable copy of the parent; its towers' last blocks unlocked when asked."""
    unlock = {k: getattr(opt, k) for k in ("unlock_image", "unlock_text") if getattr(opt, k)}
    if not unlock:
        return load_record(parent, device)
    if parent.family not in ("bundled", "openclip"):
        raise LibraryError(f"a {parent.family} model trains its whole towers already; "
                           "unlocking blocks applies to the bundled and CLIP models")
    config = {**json.loads(parent.config_json), **unlock}
    model = create_model(config, device=device)
    if parent.path:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(Path(parent.path) / "weights.safetensors")),
                              strict=False)
    return model


def add_model(lib: Library, config: dict, activate_now: bool = True,
              progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> str:
    """Register a model built from a config (e.g. CLIP weights from a local file)."""
    model = create_model(config, device=lib.config.device)
    lib._register(model, path=None, activate=False)
    if activate_now:
        activate(lib, model.version, progress=progress, cancel=cancel, model=model)
    return model.version


def captioned_photos(lib: Library) -> CaptionedPhotos:
    with lib.catalog.session() as s:
        rows = s.execute(select(Photo.id, Photo.path, Photo.content_hash, Caption.text)
                         .join(Caption, Caption.photo_id == Photo.id)
                         .where(Photo.status == "ok").order_by(Photo.id, Caption.id)).all()
    data = CaptionedPhotos([], [], [], [])
    for pid, path, digest, text in rows:
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


def train(lib: Library, options: TrainOptions | None = None,
          cancel: threading.Event | None = None) -> Iterator[TrainEvent]:
    """Train a new model version on the library's captions; maybe activate it (see options)."""
    opt = options or TrainOptions()
    check_options(opt)
    started = time.monotonic()
    parent_rec = lib.active_model_record()
    data = captioned_photos(lib)
    split = split_photos(data, opt.holdout, opt.seed)
    train_set = split.train
    same_family = opt.family in (None, parent_rec.family)
    if same_family:
        model = derive(parent_rec, opt, lib.config.device)
    elif opt.family == "openclip":
        raise LibraryError("add a CLIP model first (chikaku models add-clip), then train it")
    else:
        model = create_model({"family": opt.family}, device=lib.config.device)
    model.parent = parent_rec.version
    tower_key = hashlib.blake2b(json.dumps(model.config(), sort_keys=True).encode(),
                                digest_size=8).hexdigest()
    cache = FeatureCache(lib.config.cache_dir / "features" / f"{model.family}-{tower_key}.npz")
    run_dir = lib.config.models_dir / "_runs" / run_key(opt, parent_rec.version, data)
    trainer = Trainer(model, train_set, split.select, opt, cache, run_dir, judge=split.judge)
    outcome = yield from run(trainer, cancel)
    (before, before_scores) = (outcome.judged_before if same_family
                               else _judged_by(lib.model, split.judge))
    after, after_scores = outcome.judged_after
    verdict = judge(before_scores, after_scores)
    improved = bool(verdict.better)
    info = {"parent": parent_rec.version, "photos": len(train_set.ids),
            "captions": train_set.caption_count, "held_out_photos": len(split.judge.ids),
            "selection_photos": len(split.select.ids), "options": asdict(opt),
            "before": before, "after": after, "verdict": verdict.as_dict(),
            "seconds": round(time.monotonic() - started, 1)}
    version = model.version
    folder = save_checkpoint(model, lib.config.models_dir / _file_name(version), info)
    lib._register(model, path=folder, activate=False, info=info)
    result = TrainResult(version, parent_rec.version, before, after, improved, False,
                         verdict=verdict.reason, steps=opt.steps, photos=len(train_set.ids),
                         captions=train_set.caption_count, seconds=info["seconds"],
                         checkpoint=str(folder))
    if opt.activate == "always" or (opt.activate == "if_better" and improved):
        yield from _activate_events(lib, version, model, cancel)
        result.activated = True
    shutil.rmtree(run_dir, ignore_errors=True)
    if result.activated:
        msg = f"the new model is active ({verdict.reason})"
    elif improved:
        msg = f"the new model was saved; activate it to use it ({verdict.reason})"
    else:
        msg = f"{verdict.reason}; it was kept but not activated"
    yield TrainEvent("done", opt.steps, opt.steps, recall=after, message=msg, result=result)


def _activate_events(lib: Library, version: str, model: DualEncoder | None,
                     cancel: threading.Event | None) -> Iterator[TrainEvent]:
    """Run activate() on a thread and stream its re-embedding progress as events.

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
            activate(lib, version, progress=progress, cancel=cancel, model=model)
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


def activate(lib: Library, version: str, progress: ProgressFn | None = None,
             cancel: threading.Event | None = None, model: DualEncoder | None = None) -> None:
    """Make a model version the active one. Photos without its vectors are embedded first;
    search keeps using the current vectors until they are all there, then switches at once."""
    with lib.catalog.session() as s:
        rec = s.get(ModelRecord, version)
        if rec is None:
            raise LibraryError(f"no model {version!r} in this library (see `chikaku models`)")
    if rec.active:
        return
    model = model or load_record(lib.located(rec), lib.config.device)
    idx = lib._index_of(model, lib.catalog.generation())
    roots = [Path(r) for r in lib.folders() if Path(r).is_dir()]
    if roots:
        Indexer(lib.catalog, model, idx, lib.config.indexing,
                exclude_dirs=(lib.root,)).run(roots, progress=progress, cancel=cancel)
    if idx.outgrown:  # re-embedding made it large: the IVF index, before search uses it
        idx = lib._new_index(model)
    lib._switch_model(model, idx, version)


def delete_model(lib: Library, version: str) -> None:
    with lib.catalog.session() as s:
        rec = s.get(ModelRecord, version)
        if rec is None:
            raise LibraryError(f"no model {version!r} in this library")
        if rec.active:
            raise LibraryError("the active model cannot be deleted; activate another one first")
        path = lib.checkpoint_dir(rec.path)
        s.execute(delete(Embedding).where(Embedding.model_version == version))
        s.delete(rec)
    if path and Path(path).is_dir() and Path(path).parent == lib.config.models_dir:
        shutil.rmtree(path, ignore_errors=True)
    for f in lib.config.index_dir.glob(_file_name(version) + ".*"):
        f.unlink(missing_ok=True)


def previous_version(lib: Library) -> str | None:
    """The model that was active before the current one (its parent), if it still exists."""
    rec = lib.active_model_record()
    with lib.catalog.session() as s:
        if rec.parent and s.get(ModelRecord, rec.parent) is not None:
            return rec.parent
    return None


__all__ = ["ModelInfo", "list_models", "train", "activate", "delete_model", "previous_version",
           "captioned_photos", "Cancelled"]
