"""The facade the app and the command line use: one library = catalog + model + index."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .blas import numpy_on_one_thread
from .calibration import Calibration
from .catalog import Catalog, ModelRecord, Photo
from .config import DATABASE_ENV, LibraryConfig, TrainOptions, default_library_dir
from .errors import BadImage, LibraryError, ModelLoadError, QueryError
from .feedback import Feedback
from .fsinfo import system_filesystem
from .imageio import decode_file
from .index import IdFilter, VectorIndex, parse_memory, plan_for
from .indexer import Indexer, IndexReport
from .lock import WriterLock, setup_lock
from .models import create_model, default_config
from .models.quicktext import QuickText
from .names import NamedThing, Names
from .progress import Emit, Progress, as_job, silent
from .query import Hit, Term, parse_query
from .ranking import Ranked, Ranker, Scales
from .registry import ModelInfo, ModelRegistry
from .scan import excluded_below, is_utf8, shown_path
from .vectors import VectorStore

if TYPE_CHECKING:  # the training code is imported only when a person trains
    from .models.base import DualEncoder
    from .training.loop import TrainResult

log = logging.getLogger(__name__)

DEFAULT_MODEL: dict[str, Any] = default_config("bundled")


def photo_folder(p: Path | str) -> Path:
    """The absolute folder a person named, or a LibraryError saying what is wrong with it."""
    path = Path(p).expanduser().resolve()
    if not path.exists():
        raise LibraryError(f"no such folder: {p}")
    if not path.is_dir():
        raise LibraryError(f"not a folder: {p} (give the folder that holds your photos)")
    if fstype := system_filesystem(path):
        raise LibraryError(f"{shown_path(str(p))} is a system folder ({fstype} file system: the "
                           "kernel's view of processes, devices or settings), not photos, so it "
                           "cannot be indexed (if an earlier version added it, `chikaku folders "
                           "remove PATH` takes it out of the library)")
    if not is_utf8(str(path)):
        raise LibraryError(f"the folder name {shown_path(str(path))} is not valid UTF-8, "
                           "so the catalog cannot keep it: rename it to index it")
    return path


def _globs(patterns: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in patterns if p and p.strip()))


def _refuse_emptied_catalog(config: LibraryConfig) -> None:
    """A catalog.db of 0 bytes beside trained models is a lost catalog, not a new library: SQLite
    would silently start an empty one that no longer knows those models. (Without trained models
    it is a creation cut short, and the library is created.)"""
    db = config.root / "catalog.db"
    try:
        if config.database_url or db.stat().st_size > 0:
            return
    except OSError:
        return
    trained = sorted(p.parent.name for p in config.models_dir.glob("*/weights.safetensors")
                     if not p.parent.name.startswith("_"))
    if not trained:
        return
    backups = sorted(b.name for b in config.root.glob("catalog.db.schema*.bak"))
    raise LibraryError(
        f"the catalog {db} is empty (0 bytes), but this library holds {len(trained)} trained "
        f"model(s) in {config.models_dir}: the catalog was lost (a crash or a full disk while it "
        "was written?), and opening it would start a new library that no longer knows them. "
        "Restore catalog.db from a backup" + (f" (such as {backups[-1]} beside it)" if backups
                                              else "")
        + "; or, to start over knowingly, delete the empty catalog.db (the models folder stays "
        "as it is, unused)")


@dataclass
class LibraryStatus:
    root: str
    photos: int
    embedded: int
    skipped: list[tuple[str, str]]
    folders: list[str]
    model_version: str | None
    model_family: str | None
    captions: int
    missing: int = 0  # photos gone from their folder, kept (with captions) until found elsewhere
    kept_captions: int = 0  # captions of photos that left, waiting for that content to return
    model_title: str = ""  # the active model in words ("Base model", "Tuned on 782 of your…")


class Library:
    def __init__(self, config: LibraryConfig, default_model: dict[str, Any] | None = None):
        self.config = config
        self.root = Path(config.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LibraryError(f"cannot create the library folder {self.root}: {e}") from e
        self.writer = WriterLock(self.root / "writer.lock", config.database_url)
        self._default_model = dict(default_model or DEFAULT_MODEL)
        self._model: DualEncoder | None = None
        self._quick: tuple[str, QuickText | None] | None = None  # a version's quick text side
        self._lock = threading.RLock()
        self._loading = threading.Lock()  # held while the model loads (seconds)
        # two first opens (on any machine, for a shared catalog) must not both create it
        with setup_lock(self.root / "setup.lock", config.database_url):
            _refuse_emptied_catalog(config)
            self.catalog = Catalog(config.catalog_url)
            # a catalog in the library folder moves and is copied with it; another database
            # is the same library whichever folder opens it
            home = self.root if config.database_url is None else None
            self.identity = self.catalog.identity(home)
            self.registry = ModelRegistry(self.catalog, self.root, config.models_dir,
                                          config.index_dir)
            # FAISS on the GPU: automatic unless the library is set to the CPU
            self.store = VectorStore(self.catalog, config.index_dir, self.identity,
                                     use_gpu=False if config.device == "cpu" else None,
                                     holds=lambda: self.writer.holds if self.writer.busy
                                     else None)
            self.scales = Scales(self.catalog)  # score calibration, per model version
            self.names = Names(self.catalog)  # @names: their photos, a vector per model version
            self.feedback = Feedback(self.catalog)  # results marked right or wrong, by query
            self._ensure_active_model()

    @classmethod
    def open(cls, root: Path | str | None = None, device: str = "auto",
             default_model: dict[str, Any] | None = None, **kw) -> Library:
        root = Path(os.path.abspath(Path(root).expanduser())) if root else default_library_dir()
        kw.setdefault("database_url", os.environ.get(DATABASE_ENV) or None)
        return cls(LibraryConfig(root=root, device=device, **kw), default_model=default_model)

    def close(self) -> None:
        self.catalog.close()

    # -- model ----------------------------------------------------------------------------------
    def _ensure_active_model(self) -> None:
        if self.registry.has_active():
            return
        model = create_model(self._default_model, device=self.config.device)
        self.registry.register(model, active=True)
        self._model = model

    def active_model_record(self) -> ModelRecord:
        """The active model's row, its ``path`` the checkpoint folder in this library."""
        return self.registry.active()

    @property
    def model(self) -> DualEncoder:
        """The catalog's active model. A library kept open for hours (a watcher, the app) follows
        a switch made by another process: the model it names is loaded the next time it is used.
        Loading takes seconds; searches answered meanwhile are not held up (``_search_model``).
        Never asked for while holding ``_lock``: a load holds ``_loading`` and then takes
        ``_lock``, so the other order would deadlock."""
        version = self.registry.active_version()
        with self._lock:
            if self._model is not None and self._model.version == version:
                return self._model
        rec = self.registry.active()
        with self._loading:  # one load at a time; a second caller takes the first one's model
            with self._lock:
                if self._model is not None and self._model.version == rec.version:
                    return self._model
            model = self.registry.load(rec, self.config.device)
            with self._lock:
                # a switch made meanwhile already set its own model
                if self._model is None or self._model.version != self.registry.active_version():
                    self._model = model
                return self._model

    def _quick_text(self, version: str) -> QuickText | None:
        """The text side of the active version in NumPy (engine.models.quicktext), made once;
        None when its family has none or its files cannot be read (the model answers then)."""
        with self._lock:
            if self._quick is not None and self._quick[0] == version:
                return self._quick[1]
        rec = self.registry.active()  # its row only when the side is to be made
        try:
            quick = QuickText.for_model(rec.version, json.loads(rec.config_json or "{}"),
                                        Path(rec.path) if rec.path else None)
        except (ModelLoadError, ValueError) as e:
            log.info("no quick text side for %s: %s", rec.version, e)
            quick = None
        with self._lock:
            self._quick = (rec.version, quick)
        return quick

    def _search_model(self, terms: list[Term]) -> DualEncoder | QuickText:
        """What answers a query: for words alone, the active version's quick text side where it
        has one (the model's own vectors: the first search after a start does not wait for
        PyTorch and both image towers, and every later one encodes its words in a few
        milliseconds, beside whatever the model is doing); else the model."""
        if all(t.kind == "text" for t in terms):
            return self.text_encoder()
        return self.model

    def text_encoder(self) -> DualEncoder | QuickText:
        """What encodes a query's words: the active version's quick text side where it has one
        (engine.models.quicktext), else its model."""
        return self._quick_text(self.registry.active_version()) or self.model

    def warm_up(self) -> None:
        """Make the first text search quick: the active version's text side (in NumPy where it
        has one, else the model), a first call of it, the index and its score calibration.
        The whole model (image queries, indexing) is ``load_model``'s, called after this."""
        model = self._search_model([Term(1.0, "text", "a photo")])
        model.encode_texts(["a photo"])
        with self._lock:
            self.store.current(model)
        self.scales.of(model)
        self.scales.reference(model.version, model.dim)

    def load_model(self) -> str:
        """Load the active model with a first call of each tower's head (after ``warm_up``: image
        queries and indexing need it); its version."""
        model = self.model
        model.encode_texts(["a photo"])
        return model.version

    # -- index ----------------------------------------------------------------------------------
    @property
    def index(self) -> VectorIndex:
        """The active model's index, reloaded when another process changed the catalog."""
        model = self.model  # never loaded while holding the lock (a search would wait on it)
        with self._lock:
            return self.store.current(model)

    # -- indexing -------------------------------------------------------------------------------
    def add_folders(self, paths: list[Path | str], progress: Emit | None = None,
                    cancel: threading.Event | None = None) -> IndexReport:
        """Index (or re-index) folders: new photos are embedded, changes picked up."""
        folders = [photo_folder(p) for p in paths]
        if not folders:
            raise LibraryError("give at least one folder to index")
        _ = self.model  # loaded (seconds) before the writer is held: caption saves go on meanwhile
        with self.writer.hold("indexing"):
            model = self.model  # the active one under the hold (a switch may have come between)
            self.store.drop_damaged(model)
            idx = self.index
            indexer = Indexer(self.catalog, model, idx, self.config.indexing,
                              exclude_dirs=(self.root,))
            try:
                return indexer.run(folders, progress=progress, cancel=cancel)
            finally:
                self.store.finish(idx, model)

    def reindex(self, progress: Emit | None = None,
                cancel: threading.Event | None = None) -> IndexReport:
        """Re-scan every folder of the library (a whole-library pass: photos marked missing by a
        pass over some folders and not found in any other leave now, their captions kept)."""
        paused = set(self.paused_folders())
        folders = [f for f in self.folders() if Path(f).is_dir() and f not in paused]
        if not folders:
            raise LibraryError("the library has no folders yet: add one with `chikaku index PATH`")
        return self.add_folders(folders, progress=progress, cancel=cancel)

    def remove_folder(self, path: Path | str) -> int:
        """Take a folder out of the library: its photos, their vectors and captions leave the
        catalog (the files on disk are never touched). Returns how many photos left.

        The one removal that does not wait for the files to be gone: the person asked for it.
        Indexing never removes a folder's photos unless the folder is there, readable, and the
        files are really gone (see engine.indexer)."""
        folder = str(Path(path).expanduser().resolve())
        model = self.model if self.store.loaded is not None else None  # loaded before the lock
        with self.writer.hold("removing a folder"), self._lock:
            if model is not None:
                # checked against the catalog first: another process may have changed it since
                self.store.current(model)
            ids = self.catalog.delete_folder(folder)
            if ids is None:
                raise LibraryError(f"{path} is not a folder of this library")
            self.store.remove(ids)
            return len(ids)

    def set_folder_paused(self, path: Path | str, paused: bool) -> None:
        """A paused folder is not watched or re-scanned; its photos stay searchable."""
        folder = str(Path(path).expanduser().resolve())
        with self.writer.hold("pausing a folder"):
            if not self.catalog.set_folder_paused(folder, paused):
                raise LibraryError(f"{path} is not a folder of this library")

    def excluded_by(self, patterns: list[str]) -> list[str]:
        """The paths of the library's photos that these name patterns would take out (a file or
        folder name below a library folder matching one), before anything is changed."""
        globs = _globs(patterns)
        if not globs:
            return []
        return [path for _pid, path in self._excluded(globs)]

    def set_exclusions(self, patterns: list[str]) -> int:
        """Exclude by these name patterns from now on: the photos they match leave the library
        at once (their captions are kept, and come back with the photo if a pattern is
        removed and it is indexed again). Returns how many photos left."""
        globs = _globs(patterns)
        model = self.model if self.store.loaded is not None else None  # loaded before the lock
        with self.writer.hold("excluding photos"), self._lock:
            if model is not None:
                self.store.current(model)  # checked against the catalog first
            ids = [pid for pid, _path in self._excluded(globs)]
            self.catalog.remove_photos(ids)
            self.store.remove(ids)
            self.config = replace(self.config,
                                  indexing=replace(self.config.indexing, exclude_globs=globs))
            return len(ids)

    def _excluded(self, globs: tuple[str, ...]) -> list[tuple[int, str]]:
        folders = sorted(self.folders(), key=len, reverse=True)  # the innermost first
        out = []
        for pid, path in self.catalog.searchable_photo_paths():
            folder = next((f for f in folders if path.startswith(f.rstrip(os.sep) + os.sep)),
                          None)
            if folder is not None and excluded_below(path, folder, globs):
                out.append((pid, path))
        return out

    def paused_folders(self) -> list[str]:
        return self.catalog.paused_folder_paths()

    def folders(self) -> list[str]:
        return self.catalog.folder_paths()

    # -- search ---------------------------------------------------------------------------------
    def query_vector(self, terms: list[Term], model: DualEncoder | None = None) -> np.ndarray:
        model = model or self.model
        total = np.zeros(model.dim, dtype=np.float64)  # float64: large weights stay finite
        texts = [t for t in terms if t.kind == "text"]
        vectors = [(t.weight, v) for t, v in zip(
            texts, model.encode_texts([t.value for t in texts]) if texts else [], strict=True)]
        vectors += [(t.weight, self.names.vector(t.value, model) if t.kind == "name"
                     else self._image_term_vector(t, model))
                    for t in terms if t.kind != "text"]
        with np.errstate(over="ignore", invalid="ignore"):  # absurd weights: caught just below
            for weight, v in vectors:
                total += weight * v.astype(np.float64)
            norm = float(np.linalg.norm(total))
        if not np.isfinite(norm):
            raise QueryError("a weight in the query is too large")
        if norm < 1e-6:
            raise QueryError("the terms of the query cancel each other out")
        return (total / norm).astype(np.float32)

    def _image_term_vector(self, term: Term, model: DualEncoder) -> np.ndarray:
        if term.kind == "photo":
            photo = self.catalog.photo(int(term.value))
            if photo is None:
                raise QueryError(f"no photo with id {term.value} in the library")
        elif is_utf8(term.value):  # a name that is not UTF-8 is never a library photo
            photo = self.catalog.photo_by_path(term.value)
        else:
            photo = None
        if photo is not None:
            vec = self.catalog.intact_vector_of(photo.id, model.version, model.dim)
            if vec is not None:  # else none yet, or damaged: the file is read
                return vec
            path = Path(photo.path)
        else:
            path = Path(term.value)
        if not hasattr(model, "encode_images"):  # a quick text side reads no image
            model = self.model
        try:
            img = decode_file(path, size=model.input_size, max_pixels=self.config.indexing.max_pixels)
        except BadImage as e:
            raise QueryError(f"cannot use {shown_path(str(path))} as a query: {e}") from e
        return model.encode_images(img.pixels[None])[0]

    def search(self, query: str | None = None, k: int | None = None,
               image: str | Path | Sequence[str | Path] | None = None,
               folder: str | Path | None = None,
               date_from: datetime | None = None, date_to: datetime | None = None,
               offset: int = 0) -> list[Hit]:
        """Photos matching the query (text, image files, or a combined query; see
        engine.query), best first: by default the likely matches (at least a handful, at most
        engine.ranking.PAGE); ``k``: that many, whatever their strength. ``offset`` skips the
        first photos of the ranking: the next page ("show more") starts where one ended."""
        terms = parse_query(query) if query else []
        images = [image] if isinstance(image, str | Path) else list(image or ())
        for one in images:  # several images: photos like all of them
            path = Path(one).expanduser()
            if not path.is_file():
                raise QueryError(f"no such image file: {shown_path(str(one))}")
            terms.append(Term(1.0, "image", str(path.resolve())))
        if not terms:
            raise QueryError("the query is empty: type some words or give a photo")
        if k is not None and k <= 0:
            raise QueryError("the number of results must be at least 1")
        if offset < 0:
            raise QueryError("the first result to show cannot be before the first")
        numpy_on_one_thread()  # a query's products are small (engine.blas)
        for _ in range(3):  # the active version's model and its index, even while models switch
            model = self._search_model(terms)  # loaded outside the lock (it may take seconds)
            with self._lock:
                if model.version == self.registry.active_version():
                    idx = self.store.current(model)
                    break
        else:
            raise LibraryError("the model changed three times during one search: search again")
        if len(idx) == 0:
            raise LibraryError("the library is empty: add a folder of photos with "
                               "`chikaku index PATH`")
        ranker = Ranker(self.catalog, idx, self.scales.of(model),
                        self.scales.reference(model.version, model.dim),
                        lambda ts: self.query_vector(ts, model))
        marked, drop = self.feedback.terms(query) if any(
            t.kind == "text" for t in terms) else ([], set())
        ranked = ranker.rank(terms + marked, self._filter_ids(folder, date_from, date_to), k,
                             offset, drop=drop)
        return self._hits(ranked)

    def mark(self, query: str, photo_id: int, right: bool | None) -> None:
        """Mark a result right or wrong for the query's words (None: unmark): the query's
        results re-rank at once, and the next fine-tune learns from it (engine.feedback)."""
        with self.writer.hold("saving feedback"):
            self.feedback.mark(query, photo_id, right)

    def feedback_for(self, query: str) -> tuple[list[int], list[int]]:
        """(photos marked right, photos marked wrong) for a query's words."""
        return self.feedback.marks(query) if query and query.strip() else ([], [])

    def feedback_marks(self) -> list:
        """Every mark (engine.catalog_feedback.MarkRow), by query."""
        return self.feedback.all()

    def feedback_clear(self, query: str) -> int:
        """Take back every mark of a query (and the captions its right marks added)."""
        with self.writer.hold("saving feedback"):
            return self.feedback.clear(query)

    def calibration(self) -> Calibration:
        """The active model's score calibration (engine.calibration)."""
        return self.scales.of(self.model)

    def calibrate(self) -> Calibration:
        """Calibrate the active model again on the library's captions, and keep it."""
        with self.writer.hold("calibrating"):
            return self.scales.fit(self.model)

    def browse(self, offset: int = 0, limit: int | None = None) -> list[Hit]:
        """The library's photos newest first, to look through with no query (no scores)."""
        return [Hit(pid, path, 0.0, date, width, height)
                for pid, path, date, width, height in self.catalog.newest_photos(offset, limit)]

    def _filter_ids(self, folder, date_from, date_to) -> IdFilter | None:
        if folder is None and date_from is None and date_to is None:
            return None
        under = (None if folder is None
                 else str(Path(folder).expanduser().resolve()).rstrip("/") + "/")
        return self.store.filter(under, date_from, date_to)

    def set_index_memory(self, budget: str | None) -> str:
        """Keep a memory budget for the index ("8G", "512M"; None: none), which picks its kind
        (engine.index.plan_for: exact while small, IVF-Flat while the vectors fit, else IVF-PQ
        with the largest code that fits); the index is rebuilt now when its kind changes.
        Returns the kind."""
        size = None if budget is None else parse_memory(budget)
        model = self.model
        with self.writer.hold("setting the index's memory budget"), self._lock:
            idx = self.store.current(model)
            plan = plan_for(len(idx), model.dim, size)  # a budget too small says so here
            self.store.set_memory(size)
            if "flat" not in (plan.kind, idx.kind) and (plan.kind, plan.m) != (
                    idx.plan.kind, idx.plan.m):  # an exact index changes as it grows
                idx = self.store.build(model)
                self.store.adopt(idx)
            return idx.kind

    def _hits(self, ranked: Ranked) -> list[Hit]:
        if not ranked.ids:
            return []
        rows = self.catalog.hit_rows(ranked.ids)
        return [Hit(i, rows[i][0], sc, *rows[i][1:], st, w) for i, sc, st, w in zip(
            ranked.ids, ranked.cosines, ranked.strengths, ranked.words, strict=True) if i in rows]

    # -- models ---------------------------------------------------------------------------------
    def models(self) -> list[ModelInfo]:
        return self.registry.records()

    def train(self, options: TrainOptions | None = None, progress: Emit | None = None,
              cancel: threading.Event | None = None) -> TrainResult:
        """Train a new model version on the library's captions, then activate it if the options
        and the judgement say so. Progress: "training" events, then "activating" ones while
        photos are re-embedded, and a last "done" event carrying the result."""
        from .training.finetune import (  # here: the training code slows every start
            TrainingSite,
            closing_message,
            should_activate,
            train,
        )

        emit = progress or silent
        opt = options or TrainOptions()
        site = TrainingSite(self.catalog, self.registry, self.config,
                            active_model=lambda: self.model)
        with self.writer.hold("training"):
            result, model = train(site, opt, emit, cancel)
            if should_activate(opt, result):
                self._activate(result.version, emit, cancel, model)
                result.activated = True
        emit(Progress("training", "done", result.steps, result.steps, recall=result.after,
                      message=closing_message(result), result=result))
        return result

    def activate_model(self, version: str, progress: Emit | None = None,
                       cancel: threading.Event | None = None) -> None:
        with self.writer.hold("switching models"):
            self._activate(version, progress, cancel)

    def add_model(self, config: dict, activate: bool = True, progress: Emit | None = None,
                  cancel: threading.Event | None = None) -> str:
        """Add a model from its config, e.g. {"family": "openclip", "arch": "ViT-B-32",
        "weights": "/path/to/weights.pt"}; activating it embeds the library in the background."""
        with self.writer.hold("adding a model"):
            model = create_model(config, device=self.config.device)
            self.registry.register(model)
            if activate:
                self._activate(model.version, progress, cancel, model)
            return model.version

    def upgrade_available(self) -> str | None:
        """What a better base model would change for the active one, in a line, or None. Only an
        untrained bundled model is offered one: a fine-tuned model searches better than any
        base model until it is trained again (see ``upgrade``)."""
        from .models.recipe import describe_upgrade, upgraded_config

        rec = self.registry.active()
        if rec.family != "bundled" or rec.path:
            return None
        config = json.loads(rec.config_json)
        new = upgraded_config(config)
        return None if new is None else describe_upgrade(config, new)

    def image_tower(self) -> str | None:
        """The active model's image tower as ``upgrade`` names it ("lite0", "lite1") when it is an
        untrained bundled model, whose tower a person may change; else None."""
        from .models.recipe import OLD_TOWER, TOWER_NAMES

        rec = self.registry.active()
        if rec.family != "bundled" or rec.path:
            return None
        full = json.loads(rec.config_json).get("image_tower", OLD_TOWER)
        return next((short for short, name in TOWER_NAMES.items() if name == full), None)

    def upgrade(self, tower: str | None = None, progress: Emit | None = None,
                cancel: threading.Event | None = None) -> str | None:
        """Switch the active bundled model to the current base model (the current zero-shot
        recipe; ``tower``: "lite0" or "lite1" to change the image tower too), through the usual
        activation: photos are re-embedded while search keeps the old vectors. The old version
        stays registered with its vectors, as the new one's parent, so `chikaku models back`
        (or activating it) returns at once. The new version, or None when nothing changes."""
        from .models.recipe import upgraded_config

        with self.writer.hold("upgrading the model"):
            rec = self.registry.active()
            if rec.family != "bundled":
                raise LibraryError(f"the active model is a {rec.family} model: upgrades are for "
                                   "the bundled model")
            if rec.path:
                raise LibraryError(
                    f"the active model {rec.version} was fine-tuned on your captions; a new base "
                    "model would lose that training and search worse until trained again. To "
                    "move it to the new base: activate its untrained base model (`chikaku "
                    "models`), upgrade that, then `chikaku train`")
            config = upgraded_config(json.loads(rec.config_json), tower)
            if config is None:
                return None
            model = create_model(config, device=self.config.device)
            model.parent = rec.version
            self.registry.register(model)
            self._activate(model.version, progress, cancel, model)
            return model.version

    def delete_model(self, version: str) -> None:
        with self.writer.hold("deleting a model"):
            self.registry.delete(version)

    def previous_model(self) -> str | None:
        """The model that was active before the current one (its parent), if it still exists."""
        return self.registry.previous(self.registry.active().version)

    def _activate(self, version: str, progress: Emit | None = None,
                  cancel: threading.Event | None = None, model: DualEncoder | None = None) -> None:
        """Make a model version the active one (the caller holds the writer lock). Photos without
        its vectors are embedded first; search keeps using the current vectors until they are all
        there, then catalog, model and index switch together."""
        rec = self.registry.get(version)
        if rec is None:
            raise LibraryError(f"no model {version!r} in this library (see `chikaku models`)")
        if rec.active:
            return
        model = model or self.registry.load(rec, self.config.device)
        idx = self.store.of(model)
        roots = [Path(r) for r in self.folders() if Path(r).is_dir()]
        if roots:
            Indexer(self.catalog, model, idx, self.config.indexing,
                    exclude_dirs=(self.root,)).run(roots, progress=as_job(progress, "activating"),
                                                   cancel=cancel)
        idx = self.store.ready_for(model, idx)
        with self._lock:
            self.registry.set_active(version)
            self._model = model
            self.store.adopt(idx)
        self.scales.fit(model)  # its own scale, on the library's captions
        self.names.refresh(model)  # each name's vector, from its photos' new vectors

    def captioned_photo_count(self) -> int:
        return self.catalog.captioned_photo_count()

    # -- captions -------------------------------------------------------------------------------
    def captions(self, photo_id: int) -> list[str]:
        return self.catalog.captions_of(photo_id)

    def set_captions(self, photo_id: int, texts: list[str], source: str = "user") -> None:
        # The given list becomes the photo's captions: kept lines keep their row (and where
        # they were imported from), removed lines go, new lines are added with ``source``.
        wanted = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
        with self.writer.hold("saving captions"):
            if not self.catalog.replace_captions(photo_id, wanted, source):
                raise LibraryError(f"no photo with id {photo_id} in the library")

    def photo(self, photo_id: int) -> Photo | None:
        return self.catalog.photo(photo_id)

    def photo_by_path(self, path: str | Path) -> Photo | None:
        return self.catalog.photo_by_path(str(Path(path).resolve()))

    # -- names ----------------------------------------------------------------------------------
    def named_things(self) -> list[NamedThing]:
        """The names given to photos (``@name`` in a query), alphabetically."""
        return self.names.all()

    def name_photos(self, name: str, photo_ids: list[int],
                    add_to_captions: bool = False) -> NamedThing:
        """Name these photos (or add them to a name): ``@name`` then finds photos like them.
        ``add_to_captions``: the name also becomes a caption of each of them, so that the next
        fine-tune learns the word itself. Photos not in the library: refused, nothing changed."""
        with self.writer.hold("naming photos"):
            named = self.names.add(name, photo_ids, add_to_captions)
            # its vector for the active model now, rather than at the first search
            with suppress(QueryError):  # photos without a vector yet: made once they have one
                self.names.vector(named.name, self.model)
            return named

    def rename_name(self, old: str, new: str) -> NamedThing:
        with self.writer.hold("renaming a name"):
            return self.names.rename(old, new)

    def delete_name(self, name: str) -> NamedThing:
        """A name leaves (with the captions it added); its photos stay."""
        with self.writer.hold("deleting a name"):
            return self.names.delete(name)

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> LibraryStatus:
        rec = self.active_model_record()
        n = self.catalog.status_counts(rec.version)
        title = next((m.title for m in self.registry.records() if m.version == rec.version), "")
        return LibraryStatus(str(self.root), n.photos, n.embedded, n.skipped, self.folders(),
                             rec.version, rec.family, n.captions, n.missing, n.kept_captions,
                             title)
