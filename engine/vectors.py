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
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .catalog import Catalog
from .index import VectorIndex, ids_digest
from .models.base import DualEncoder
from .query import sample_queries


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
        return idx

    def build(self, model: DualEncoder) -> VectorIndex:
        """The one place an index is built from the catalog's vectors: exact or IVF by size
        (VectorIndex.build), FAISS on the GPU only where the library may use it."""
        ids, vecs = self.catalog.vectors(model.version, model.dim)
        return VectorIndex.build(model.dim, model.version, ids, vecs, use_gpu=self.use_gpu,
                                 queries=lambda: tuning_queries(model))

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
                          lambda: tuning_queries(model))

    def ready_for(self, model: DualEncoder, idx: VectorIndex) -> VectorIndex:
        """``idx`` after re-embedding for an activation, or the IVF index it now calls for,
        built before search uses it."""
        return self.build(model) if idx.outgrown else idx

    def adopt(self, idx: VectorIndex, save: bool = True) -> None:
        """Make ``idx`` the current index (a switch of model version), in step and saved."""
        with self._lock:
            self._index = idx
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
