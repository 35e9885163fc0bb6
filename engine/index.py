"""FAISS over the catalog's normalised vectors, keyed by photo id.

Exact inner product (cosine on unit vectors). The index is a cache of one model version's
``embeddings`` rows: it is saved atomically (temporary file, fsync, ``os.replace``) with a small
JSON stamp naming the model version and the catalog's vectors generation, and it is rebuilt from
the catalog whenever the stamp does not match.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import faiss
import numpy as np


def _fsync_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename is still atomic
        pass


class VectorIndex:
    """A thread-safe exact k-NN index over (photo id, unit vector) pairs of one model version."""

    def __init__(self, dim: int, version: str) -> None:
        self.dim = dim
        self.version = version
        self._lock = threading.RLock()
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return self._index.ntotal

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vecs = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        with self._lock:
            self._index.remove_ids(faiss.IDSelectorBatch(ids))  # re-adding replaces
            self._index.add_with_ids(vecs, ids)

    def remove(self, ids) -> None:
        ids = np.ascontiguousarray(list(ids), dtype=np.int64)
        if len(ids):
            with self._lock:
                self._index.remove_ids(faiss.IDSelectorBatch(ids))

    def ids(self) -> np.ndarray:
        with self._lock:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for one query vector; ``allowed`` restricts to those ids."""
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        with self._lock:
            n = self._index.ntotal
            if n == 0 or k <= 0:
                return np.zeros(0, np.float32), np.zeros(0, np.int64)
            params = None
            if allowed is not None:
                allowed = np.ascontiguousarray(allowed, dtype=np.int64)
                if len(allowed) == 0:
                    return np.zeros(0, np.float32), np.zeros(0, np.int64)
                params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
                n = min(n, len(allowed))
            scores, ids = self._index.search(q, min(k, n), params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    # -- persistence ----------------------------------------------------------------------------
    def save(self, directory: Path, generation: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        base = directory / _file_name(self.version)
        with self._lock:
            _fsync_write(base.with_suffix(".faiss"),
                         lambda p: faiss.write_index(self._index, str(p)))
            stamp = {"version": self.version, "generation": generation, "count": len(self),
                     "dim": self.dim}
        _fsync_write(base.with_suffix(".json"), lambda p: p.write_text(json.dumps(stamp)))

    @classmethod
    def load(cls, directory: Path, version: str, dim: int, generation: int) -> VectorIndex | None:
        """The saved index if it is current for this version and generation, else None."""
        base = directory / _file_name(version)
        try:
            stamp = json.loads(base.with_suffix(".json").read_text())
            if (stamp.get("version"), stamp.get("generation"), stamp.get("dim")) != (
                    version, generation, dim):
                return None
            raw = faiss.read_index(str(base.with_suffix(".faiss")))
        except (OSError, ValueError, RuntimeError):
            return None
        if raw.d != dim or raw.ntotal != stamp.get("count"):
            return None
        idx = cls(dim, version)
        idx._index = faiss.IndexIDMap2.cast(raw) if not isinstance(raw, faiss.IndexIDMap2) else raw
        if not isinstance(idx._index, faiss.IndexIDMap2):
            return None
        return idx


def _file_name(version: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in version)
