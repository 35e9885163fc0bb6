"""The vector store: one owner for "the FAISS file is a cache of one model version's embedding
rows".

The catalog holds the vectors (the source of truth) and a generation number that every write to
them bumps; the FAISS index is built from those rows and saved with a stamp naming the library,
the model version and the generation it holds. This store is the only code that builds, loads,
saves or swaps an index: search, indexing and model activation all get theirs here, so the
CPU/GPU choice and the exact/IVF choice are made in one place.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .bigindex import build_sharded
from .catalog import Catalog
from .errors import LibraryError
from .index import (
    ExactVectors,
    IdFilter,
    IndexPlan,
    VectorIndex,
    ids_digest,
    parse_memory,
    plan_for,
    training_size,
)
from .query import sample_queries

if TYPE_CHECKING:
    from .models.base import DualEncoder

log = logging.getLogger(__name__)

MEMORY_KEY = "index_memory"  # the library's memory budget for its index (catalog meta), bytes
SHARD_BYTES = 256 << 20  # float vectors read from the catalog at a time for a sharded build
FILTERS_KEPT = 4  # filters (folder, dates) remembered, each a bitmap of one bit a photo id


def stored_vectors(catalog: Catalog, version: str, dim: int) -> ExactVectors:
    """A model version's vectors as the catalog stores them, by photo id: what an IVF-PQ
    index re-ranks its shortlist with (engine.index.VectorIndex.exact)."""
    return lambda ids: catalog.vectors_by_id(version, np.asarray(ids).tolist(), dim)


def tuning_queries(model: DualEncoder) -> np.ndarray:
    """Text query vectors like people's, for tuning an approximate index (large libraries only:
    computed when one is built)."""
    return model.encode_texts(sample_queries())


class VectorStore:
    """The active model version's index, kept in step with the catalog's rows.

    ``current`` is what search uses; it is reloaded (or rebuilt) when another process has
    changed the catalog since it was last checked. Writers that change rows through the indexer
    call ``in_step`` and ``save`` afterwards (``finish`` does both and starts the IVF conversion
    a grown library needs)."""

    def __init__(self, catalog: Catalog, index_dir: Path, library: str, use_gpu: bool | None,
                 holds: Callable[[], int | None]) -> None:
        self.catalog = catalog
        self.index_dir = index_dir
        self.library = library  # the catalog's identity, stamped on every saved index
        self.use_gpu = use_gpu  # False: the library is set to the CPU; None: automatic
        self._holds = holds  # the writer lock's current hold in this process, or None
        self._index: VectorIndex | None = None
        self._generation = -1
        self._hold: int | None = None  # the writer hold under which it was last checked
        self._lock = threading.RLock()
        self._filters: dict[tuple, IdFilter] = {}  # by (generation, folder, from, to)

    @property
    def loaded(self) -> VectorIndex | None:
        """The index in memory, without checking or loading anything."""
        return self._index

    def current(self, model: DualEncoder) -> VectorIndex:
        """The index of ``model``'s version, reloaded when another process changed the catalog."""
        with self._lock:
            idx = self._index
            current = idx is not None and idx.version == model.version
            hold = self._holds()
            if current and hold is not None and hold == self._hold:
                return idx  # checked under this hold: this process keeps it in step
            # Checked again on every new hold too: between two, another process may have
            # written, and an index saved now would hide its photos.
            gen = self.catalog.generation()
            if not (current and gen == self._generation):
                self._index, self._generation = self.of(model, gen), gen
            self._hold = hold
            return self._index

    def of(self, model: DualEncoder, generation: int | None = None) -> VectorIndex:
        """A model version's index, for search and for activating it alike: the saved one when
        it is current, else rebuilt from the catalog (and saved)."""
        gen = self.catalog.generation() if generation is None else generation
        idx = VectorIndex.load(self.index_dir, model.version, model.dim, gen,
                               use_gpu=self.use_gpu, library=self.library,
                               ids=ids_digest(self.catalog.vector_ids(model.version)))
        if idx is None:
            idx = self.build(model)
            self.save(idx, gen)
        return self._exact(idx)

    def _exact(self, idx: VectorIndex) -> VectorIndex:
        """``idx`` reading the catalog's stored vectors to re-rank what it compresses."""
        idx.exact = stored_vectors(self.catalog, idx.version, idx.dim)
        return idx

    def build(self, model: DualEncoder) -> VectorIndex:
        """The one place an index is built from the catalog's vectors: exact, IVF-Flat or
        IVF-PQ by size and the library's memory budget (index.plan_for), FAISS on the GPU only
        where the library may use it. An IVF-PQ index (the vectors do not fit the budget) is
        built shard by shard, reading a chunk of the catalog's vectors at a time."""
        memory = self.memory()
        if memory is not None:
            plan = plan_for(len(self.catalog.vector_ids(model.version)), model.dim, memory)
            if plan.kind == "ivfpq":
                return self._exact(self._sharded(model, plan))
        ids, vecs = self.catalog.vectors(model.version, model.dim)
        return self._exact(VectorIndex.build(
            model.dim, model.version, ids, vecs, use_gpu=self.use_gpu,
            queries=lambda: tuning_queries(model), memory=memory))

    def _sharded(self, model: DualEncoder, plan: IndexPlan) -> VectorIndex:
        version, dim = model.version, model.dim
        ids = self.catalog.vector_ids(version)
        rng = np.random.default_rng(0)
        chosen = np.sort(rng.choice(ids, training_size(plan, len(ids)), replace=False))
        _, sample = self.catalog.vectors_by_id(version, chosen.tolist(), dim)
        step = max(10_000, SHARD_BYTES // (4 * dim))
        shards = (self.catalog.vectors_by_id(version, ids[i : i + step].tolist(), dim)
                  for i in range(0, len(ids), step))
        self.index_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.index_dir, prefix=".shards-") as work:
            index = build_sharded(plan, sample, shards, Path(work),
                                  queries=tuning_queries(model))
        return VectorIndex.wrap(index, version, self.use_gpu)

    def filter(self, under: str | None, date_from, date_to) -> IdFilter:
        """The searchable photos under a folder (with its trailing slash) and between two
        dates, as an IdFilter: made once for each filter and catalog generation, so that the
        searches typed with a folder or dates set do not ask the catalog or allocate again."""
        key = (self.catalog.generation(), under, date_from, date_to)
        with self._lock:
            found = self._filters.get(key)
        if found is None:
            found = IdFilter(self.catalog.searchable_photo_ids(under, date_from, date_to))
            with self._lock:
                self._filters = {k: v for k, v in self._filters.items() if k[0] == key[0]}
                while len(self._filters) >= FILTERS_KEPT:
                    self._filters.pop(next(iter(self._filters)))
                self._filters[key] = found
        return found

    def memory(self) -> int | None:
        """The library's memory budget for its index in bytes; None: no budget (IVF-Flat at
        every size past the exact index's)."""
        stored = self.catalog.get_meta(MEMORY_KEY)
        if not stored:
            return None
        try:
            return parse_memory(stored)
        except LibraryError:
            log.warning("the stored index memory budget %r is not a size: ignored", stored)
            return None

    def set_memory(self, budget: int | None) -> None:
        """Keep the memory budget (bytes; None: none) for every index built from now on."""
        self.catalog.put_meta(MEMORY_KEY, "" if budget is None else str(int(budget)))

    def save(self, idx: VectorIndex, generation: int | None = None) -> None:
        # The index is a cache: if it cannot be written it is rebuilt from the catalog next time.
        # (faiss reports a failed write, e.g. on a full disk, as a RuntimeError.)
        with contextlib.suppress(OSError, RuntimeError):
            idx.save(self.index_dir,
                     self.catalog.generation() if generation is None else generation,
                     library=self.library)

    def in_step(self) -> None:
        """The index in memory holds what the catalog holds now (after this process wrote)."""
        with self._lock:
            self._generation = self.catalog.generation()

    def finish(self, idx: VectorIndex, model: DualEncoder) -> None:
        """After an indexing pass: note the generation, save, and convert a library that grew
        past the exact index's size to IVF in the background."""
        self.in_step()
        self.save(idx)
        idx.maybe_convert(lambda: self.catalog.vectors(idx.version, model.dim),
                          lambda: tuning_queries(model), memory=self.memory())

    def ready_for(self, model: DualEncoder, idx: VectorIndex) -> VectorIndex:
        """``idx`` after re-embedding for an activation, or the IVF index it now calls for,
        built before search uses it."""
        return self.build(model) if idx.outgrown else idx

    def adopt(self, idx: VectorIndex, save: bool = True) -> None:
        """Make ``idx`` the current index (a switch of model version), in step and saved."""
        with self._lock:
            self._index = self._exact(idx)
            self.in_step()
            if save:
                self.save(idx)

    def drop_damaged(self, model: DualEncoder) -> int:
        """Damaged vectors go, so that the next pass embeds their photos again."""
        return self.catalog.drop_damaged_vectors(model.version, model.dim)

    def remove(self, ids: list[int]) -> None:
        """Rows already deleted from the catalog leave the index in memory too (if loaded)."""
        with self._lock:
            if self._index is not None:
                self._index.remove(ids)
                self.in_step()
                self.save(self._index)

