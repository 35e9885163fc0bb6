"""Frozen-tower features for training, made on a Ray cluster: ``chikaku cluster features``.

Fine-tuning with locked towers trains only the heads, on the towers' outputs (the stems) for
every view of every captioned photo and for every caption. For millions of captioned photos
these are computed once by the same Ray pipeline that indexes (decoding tasks, then an actor
pool that loads the model once per actor), written as Parquet shards, and merged here into a
store of memory-mapped files (``engine.training.stems``) that ``chikaku train --features DIR``
reads instead of computing and holding them in memory.

The coordinator plans from the catalog only what an existing store in the folder lacks (its keys
are content hashes and caption texts, so a store made before stays right for the same towers),
and merges the old store with the new shards. A killed job reruns from its finished shards.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..imageio import content_hash
from ..library import Library
from ..training.features import crop_decode_size, text_key, views
from ..training.finetune import captioned_photos, tower_key
from ..training.stems import StemStore, write_store
from . import ClusterError
from .jobdir import (
    MODEL,
    SHARDS,
    STORE,
    TEXT_SHARDS,
    Plan,
    finished_count,
    pyarrow,
    read_plan,
    shards,
    write_manifest,
    write_plan,
    write_texts,
)

STORE_CHUNK = 100_000  # rows of an old store merged at a time


@dataclass
class FeaturesReport:
    planned_photos: int = 0
    planned_captions: int = 0
    photos: int = 0  # photos the store holds stems of
    captions: int = 0
    views: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why no stems were made
    refused: dict[str, str] = field(default_factory=dict)  # shard -> why it was not taken
    store: Path | None = None


def is_features_job(job_dir: Path) -> bool:
    try:
        return read_plan(job_dir).extra.get("kind") == "features"
    except ClusterError:
        return False


def built(job_dir: Path) -> bool:
    """Has this folder's plan been merged into its store?"""
    try:
        meta = json.loads((Path(job_dir) / STORE / "meta.json").read_text())
        return meta.get("job") == read_plan(job_dir).job
    except (OSError, ValueError, ClusterError):
        return False


def plan_features(library: Library, job_dir: Path, crops: int = 0, flip: bool = True,
                  stall_s: float = 600.0) -> Plan:
    """Write a features job for the library's captioned photos (and the photos marked wrong for
    a query) into ``job_dir``: only the photo views and captions its store lacks."""
    if not 0 <= crops <= 16:
        raise ClusterError(f"crops must be between 0 and 16 (got {crops})")
    job_dir = Path(job_dir).resolve()
    job_dir.mkdir(parents=True, exist_ok=True)
    model = library.model
    if any(getattr(model, k, 0) for k in ("unlock_image", "unlock_text")):
        raise ClusterError("the active model trains tower blocks of its own; precomputed "
                           "features are for locked towers")
    if not model.cacheable():
        raise ClusterError(f"a {model.family} model trains its whole towers, so their "
                           "features change at every step and cannot be made beforehand")
    rec = library.active_model_record()
    data = captioned_photos(library.catalog)
    if not data.ids:
        raise ClusterError("no photo has captions yet: caption photos (or import captions) "
                           "before making their features")
    photos = dict(zip(data.paths, data.hashes, strict=True))
    if data.hard is not None:
        photos.update(zip(data.hard.photos.paths, data.hard.photos.hashes, strict=True))
    texts = sorted({c for caps in data.captions for c in caps})
    names = views(flip, crops)
    key = tower_key(model)
    old = _old_store(job_dir, key)
    if old is not None:  # what the store holds already is not made again
        have = old.rows("image", [f"i{h}{v}" for h in photos.values() for v in names])
        have = have.reshape(len(photos), len(names)).min(axis=1) >= 0
        photos = {p: h for (p, h), got in zip(photos.items(), have, strict=True) if not got}
        texts = [t for t, r in zip(texts, old.rows("text", [text_key(t) for t in texts]),
                                   strict=True) if r < 0]
    for name in (SHARDS, TEXT_SHARDS, MODEL):  # a new plan starts a new job
        shutil.rmtree(job_dir / name, ignore_errors=True)
    if rec.path:
        shutil.copytree(rec.path, job_dir / MODEL)
    write_manifest(job_dir, [(p, *_stat(p)) for p in photos])
    write_texts(job_dir, texts)
    made = Plan(job=Plan.new_id(), version=model.version, model_config=json.loads(rec.config_json),
                checkpoint=bool(rec.path), roots=[], total=len(photos) + len(texts),
                library=library.identity, input_size=int(model.input_size),
                batch_size=library.config.indexing.batch_size,
                max_pixels=library.config.indexing.max_pixels, stall_s=stall_s,
                extra={"kind": "features", "views": names, "tower": key,
                       "large": crop_decode_size(int(model.input_size)) if crops else 0,
                       "photos": len(photos), "captions": len(texts)})
    write_plan(job_dir, made)
    return made


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return 0, 0  # the job reports it as a file that cannot be read


def _old_store(job_dir: Path, key: str) -> StemStore | None:
    """The folder's store, when it is of these towers and of the same views."""
    try:
        store = StemStore.open(job_dir / STORE)
    except Exception:
        return None
    return store if store.tower == key else None


class _ShardSide:
    """One shard's rows of one side, for the store's merge (rows without a key: bad photos)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _table(self, columns: list[str]):
        _pa, pq = pyarrow()
        table = pq.read_table(self.path, columns=columns).to_pydict()
        keep = [i for i, k in enumerate(table["key"]) if k is not None]
        return {c: [table[c][i] for i in keep] for c in columns}

    def keys(self) -> list[str]:
        return self._table(["key"])["key"]

    def stems(self) -> np.ndarray:
        return np.stack([np.frombuffer(b, np.float32) for b in self._table(["key", "stem"])["stem"]])


class _StoreChunk:
    """Rows start..stop of one side of an existing store, merged into the new one."""

    def __init__(self, store: StemStore, side: str, start: int, stop: int) -> None:
        self.store, self.side, self.start, self.stop = store, side, start, stop

    def keys(self) -> list[str]:
        return [k.decode() for k in self.store.keys[self.side][self.start : self.stop]]

    def stems(self) -> np.ndarray:
        return np.asarray(self.store.stems[self.side][self.start : self.stop])


def build(library: Library, job_dir: Path) -> FeaturesReport:
    """Merge the finished job's shards (and the store there was) into the folder's store."""
    job_dir = Path(job_dir).resolve()
    made = read_plan(job_dir)
    if made.extra.get("kind") != "features":
        raise ClusterError(f"{job_dir} holds an indexing job, not a features job")
    if made.library != library.identity:
        raise ClusterError(f"the job in {job_dir} was planned for another library")
    missing = made.total - finished_count(job_dir)
    if missing > 0:
        raise ClusterError(f"the job in {job_dir} is not finished: {missing} of {made.total} "
                           "photos and captions have no shard yet (submit it again to finish it)")
    report = FeaturesReport(planned_photos=made.extra["photos"],
                            planned_captions=made.extra["captions"], views=made.extra["views"])
    parts: dict[str, list] = {"image": [], "text": []}
    _pa, pq = pyarrow()
    for side, folder in (("image", SHARDS), ("text", TEXT_SHARDS)):
        for shard in shards(job_dir, folder):
            try:
                table = pq.read_table(shard.path, columns=["model_version"]
                                      + (["path", "reason"] if side == "image" else []))
            except Exception as e:
                report.refused[shard.path.name] = f"cannot be read: {e}"
                continue
            wrong = set(table.column("model_version").to_pylist()) - {made.version}
            if wrong:
                report.refused[shard.path.name] = (f"rows of model {', '.join(sorted(wrong))}, "
                                                   f"not {made.version}")
                continue
            if side == "image":
                for path, why in zip(table.column("path").to_pylist(),
                                     table.column("reason").to_pylist(), strict=True):
                    if why:
                        report.skipped[path] = why
            parts[side].append(_ShardSide(shard.path))
    old = _old_store(job_dir, made.extra["tower"])
    if old is not None:
        for side in parts:
            n = len(old.keys[side])
            parts[side] += [_StoreChunk(old, side, s, min(n, s + STORE_CHUNK))
                            for s in range(0, n, STORE_CHUNK)]
    views_made = sorted(set(made.extra["views"]) | set(old.meta.get("views", []) if old else ()))
    write_store(job_dir / STORE, {"job": made.job, "tower": made.extra["tower"],
                                  "model": made.version, "views": views_made}, parts)
    store = StemStore.open(job_dir / STORE)
    # a photo's own view's key is "i" and its content hash: other views' keys are longer
    report.photos = int((np.char.str_len(np.asarray(store.keys["image"]))
                         == len("i" + content_hash(b""))).sum())
    report.captions = len(store.keys["text"])
    report.store = store.path
    return report

