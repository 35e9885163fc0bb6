"""FAISS over the catalog's normalised vectors, keyed by photo id.

Inner product on unit vectors (cosine). Below ``IVF_THRESHOLD`` photos the index is exact
(``IndexFlatIP``); above it, an inverted-file index (``IndexIVFFlat``, about 2·sqrt(N) lists) whose
``nprobe`` is tuned at build time until recall@10 against exact search reaches ``TARGET_RECALL``
on sample queries: photos' own vectors, slightly moved, and the caller's sample queries (text
queries lie farther from the photos than photos do from each other, so they need more lists).
A growing library is converted from exact to IVF off to the side and swapped in, so search never
waits for it.

The index is a cache of one model version's ``embeddings`` rows: it is saved atomically
(temporary file, fsync, ``os.replace``) with a JSON stamp naming the model version and the
catalog's vectors generation, and rebuilt from the catalog whenever the stamp does not match.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import threading
from pathlib import Path

import faiss
import numpy as np

from .atomic import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

IVF_THRESHOLD = 200_000
TARGET_RECALL = 0.97  # tuned on sample queries, so that real queries stay above 0.95


_GPU_RESOURCES = None


def gpu_available() -> bool:
    """True when the installed faiss has GPU support and sees a GPU."""
    try:
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:
        return False


def _gpu_resources():
    global _GPU_RESOURCES
    if _GPU_RESOURCES is None:
        _GPU_RESOURCES = faiss.StandardGpuResources()
    return _GPU_RESOURCES


def _flat(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def recall_at(got: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(g[g >= 0]) & set(t)) for g, t in zip(got, truth, strict=True))
    return hits / truth.size


class VectorIndex:
    """A thread-safe k-NN index over (photo id, unit vector) pairs of one model version."""

    def __init__(self, dim: int, version: str, use_gpu: bool | None = None) -> None:
        self.dim = dim
        self.version = version
        self._lock = threading.RLock()
        self._index = _flat(dim)
        self._converting = False
        # On the GPU when faiss-gpu is installed and a GPU is there (None: automatic).
        self.use_gpu = gpu_available() if use_gpu is None else bool(use_gpu and gpu_available())
        self._gpu = None  # a GPU copy of _index for searching, made lazily after changes

    def __len__(self) -> int:
        return self._index.ntotal

    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self._index, faiss.IndexIVF) else "flat"

    @property
    def outgrown(self) -> bool:
        """An exact index grown past IVF_THRESHOLD: ``build`` would now make an IVF index."""
        return self.kind == "flat" and len(self) >= IVF_THRESHOLD

    @classmethod
    def build(cls, dim: int, version: str, ids: np.ndarray, vecs: np.ndarray,
              use_gpu: bool | None = None, queries=None) -> VectorIndex:
        """The right index for this many vectors: exact below IVF_THRESHOLD, IVF above.
        ``queries()``, called only when IVF is built, gives sample query vectors to tune it."""
        idx = cls(dim, version, use_gpu)
        if len(ids) >= IVF_THRESHOLD:
            idx._index = _ivf_with_ids(ids, vecs, queries() if queries is not None else None)
        else:
            idx.add(ids, vecs)
        return idx

    def add(self, ids: np.ndarray, vectors: np.ndarray, replace: bool = True) -> None:
        """Add vectors; with ``replace`` (the safe default) an id already present is replaced.
        Callers that know the ids are new pass replace=False and skip a scan of the index."""
        if len(ids) == 0:
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vecs = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        with self._lock:
            if replace:
                self._index.remove_ids(faiss.IDSelectorBatch(ids))
            self._index.add_with_ids(vecs, ids)
            self._gpu = None

    def remove(self, ids) -> None:
        ids = np.ascontiguousarray(list(ids), dtype=np.int64)
        if len(ids):
            with self._lock:
                self._index.remove_ids(faiss.IDSelectorBatch(ids))
                self._gpu = None

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None,
               every: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for one query vector; ``allowed`` restricts to those ids.
        ``every``: an inverted file looks in all its lists, so that every allowed photo is
        scored (to score given photos; a search probes only the lists nearest the query)."""
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        with self._lock:  # adds and removes are short; a conversion happens off to the side
            index, n = self._index, self._index.ntotal
            if n == 0 or k <= 0:
                return np.zeros(0, np.float32), np.zeros(0, np.int64)
            params = None
            if allowed is not None:
                allowed = np.ascontiguousarray(allowed, dtype=np.int64)
                if len(allowed) == 0:
                    return np.zeros(0, np.float32), np.zeros(0, np.int64)
                sel = faiss.IDSelectorBatch(allowed)
                params = (faiss.SearchParametersIVF(
                    sel=sel, nprobe=index.nlist if every else index.nprobe)
                          if isinstance(index, faiss.IndexIVF)
                          else faiss.SearchParameters(sel=sel))
                n = min(n, len(allowed))
            searcher = self._gpu_copy() if params is None else None
            if searcher is not None:
                scores, ids = searcher.search(q, min(k, n))
            else:
                with _one_thread():
                    scores, ids = index.search(q, min(k, n), params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def _gpu_copy(self):
        """The GPU copy of the index, remade after changes; None on the CPU or on failure."""
        if not self.use_gpu:
            return None
        if self._gpu is None:
            try:
                self._gpu = faiss.index_cpu_to_gpu(_gpu_resources(), 0, self._index)
            except Exception:  # an index type the GPU build cannot take: stay on the CPU
                log.warning("searching on the CPU: the index could not be moved to the GPU",
                            exc_info=True)
                self.use_gpu = False
                return None
        return self._gpu

    # -- growing ---------------------------------------------------------------------------------
    def maybe_convert(self, vectors_of, queries=None) -> threading.Thread | None:
        """Once an exact index passes IVF_THRESHOLD, build the IVF index on a thread and swap
        it in; searches go on against the exact index meanwhile. ``vectors_of()`` returns the
        current (ids, vecs) from the catalog; ``queries()`` sample query vectors."""
        if not self.outgrown or self._converting:
            return None
        self._converting = True

        def work() -> None:
            try:
                ids, vecs = vectors_of()
                ivf = _ivf_with_ids(ids, vecs, queries() if queries is not None else None)
                with self._lock:
                    # vectors added meanwhile: carry them over
                    present = set(ids.tolist())
                    extra = [i for i in self._ids_flat() if i not in present]
                    if extra:
                        ex = np.array(extra, dtype=np.int64)
                        ivf.add_with_ids(np.stack([self._index.reconstruct(int(i))
                                                   for i in ex]), ex)
                    self._index = ivf
                    self._gpu = None
            except Exception:  # the exact index keeps serving
                log.exception("converting the index to IVF failed")
            finally:
                self._converting = False

        t = threading.Thread(target=work, name="chikaku-index-convert", daemon=True)
        t.start()
        return t

    def _ids_flat(self) -> list[int]:
        return faiss.vector_to_array(self._index.id_map).tolist()

    def ids(self) -> np.ndarray:
        """Every photo id in the index."""
        with self._lock:
            index = self._index
            if not isinstance(index, faiss.IndexIVF):
                return faiss.vector_to_array(index.id_map).astype(np.int64)
            lists = index.invlists
            parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                     for i in range(lists.nlist) if lists.list_size(i)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, directory: Path, generation: int, library: str = "") -> None:
        """The index and its stamp: whose it is (``library``, the catalog's identity), which
        model version and generation of the vectors it holds, and checksums of its ids and of
        the file, so that a copied-in, stale or damaged file is recognised on loading."""
        directory.mkdir(parents=True, exist_ok=True)
        base = directory / file_name(self.version)
        written: dict[str, str] = {}

        def write(path: Path) -> None:
            faiss.write_index(self._index, str(path))
            written["file"] = _file_digest(path)

        with self._lock:
            atomic_write(base.with_suffix(".faiss"), write)
            stamp = {"version": self.version, "generation": generation, "count": len(self),
                     "dim": self.dim, "kind": self.kind, "library": library,
                     "ids": ids_digest(self.ids()), "file": written["file"]}
        atomic_write_text(base.with_suffix(".json"), json.dumps(stamp))

    @classmethod
    def load(cls, directory: Path, version: str, dim: int, generation: int,
             use_gpu: bool | None = None, library: str = "", ids: str | None = None
             ) -> VectorIndex | None:
        """The saved index if its stamp matches this library, version and generation, the file
        is the one the stamp describes, and it holds the ids the catalog has (``ids``: their
        ids_digest); else None, and the caller rebuilds it from the catalog."""
        base = directory / file_name(version)
        try:
            stamp = json.loads(base.with_suffix(".json").read_text())
            if not isinstance(stamp, dict) or (
                    stamp.get("version"), stamp.get("generation"), stamp.get("dim"),
                    stamp.get("library")) != (version, generation, dim, library):
                return None
            if stamp.get("file") != _file_digest(base.with_suffix(".faiss")):
                log.warning("the index file for %s is damaged: rebuilt from the catalog", version)
                return None
            raw = faiss.read_index(str(base.with_suffix(".faiss")))
        except (OSError, ValueError, RuntimeError, MemoryError):
            return None
        if raw.d != dim or raw.ntotal != stamp.get("count"):
            return None
        if not isinstance(raw, (faiss.IndexIDMap2, faiss.IndexIVFFlat)):
            return None
        idx = cls(dim, version, use_gpu)
        idx._index = raw
        held = ids_digest(idx.ids())
        if held != stamp.get("ids") or (ids is not None and held != ids):
            return None
        return idx


def ids_digest(ids: np.ndarray) -> str:
    """A checksum of a set of photo ids, in any order."""
    ordered = np.sort(np.ascontiguousarray(ids, dtype=np.int64))
    return hashlib.blake2b(ordered.tobytes(), digest_size=16).hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _one_thread():
    """One query is fastest on one thread: splitting it over OpenMP threads costs more than it
    saves, and on a small machine those threads fight the text encoder's for the cores
    (measured at 100k photos on 2 cores: 5.7 ms on one thread, 14 ms on two). OpenMP's thread
    count is per calling thread, so an index being built elsewhere keeps all cores."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _ivf_with_ids(ids: np.ndarray, vecs: np.ndarray, queries: np.ndarray | None = None
                  ) -> faiss.Index:
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    n, dim = vecs.shape
    nlist = int(max(64, min(16384, 2 * math.sqrt(n))))
    rng = np.random.default_rng(0)
    sample = vecs[rng.choice(n, min(n, 32 * nlist), replace=False)]
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = 0
    ivf.cp.niter = 20
    ivf.train(sample)
    ivf.add_with_ids(vecs, ids)
    q = vecs[rng.choice(n, min(200, n), replace=False)].copy()
    q += rng.normal(0, 0.5 / math.sqrt(dim), q.shape).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    sets = [q]
    if queries is not None and len(queries):
        extra = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, dim)
        sets.append(extra / np.maximum(np.linalg.norm(extra, axis=1, keepdims=True), 1e-12))
    truths = [ids[faiss.knn(s, vecs, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]] for s in sets]
    probe = 1
    while probe < nlist:
        ivf.nprobe = probe
        if all(recall_at(ivf.search(s, 10)[1], t) >= TARGET_RECALL
               for s, t in zip(sets, truths, strict=True)):
            break
        probe *= 2
    ivf.nprobe = min(probe, nlist)
    return ivf


def file_name(version: str) -> str:
    """A model version as a file or folder name (its index files, its checkpoint folder)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in version)
