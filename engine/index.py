"""FAISS over the catalog's normalised vectors, keyed by photo id.

Inner product on unit vectors (cosine). Below ``IVF_THRESHOLD`` photos the index is exact
(``IndexFlatIP``); above it, an inverted-file index (``IndexIVFFlat``, about 2·sqrt(N) lists) whose
``nprobe`` is tuned at build time until recall@10 against exact search reaches ``TARGET_RECALL``
on sample queries: photos' own vectors, slightly moved, and the caller's sample queries (text
queries lie farther from the photos than photos do from each other, so they need more lists).
A growing library is converted from exact to IVF off to the side and swapped in, so search never
waits for it.

With a memory budget (``plan_for``) the kind follows what fits: exact while small, IVF-Flat while
the float vectors fit the budget, IVF-PQ otherwise, with the largest code that fits (each vector
kept as ``m`` bytes). A PQ index cannot reach TARGET_RECALL by opening lists alone (its codes are
approximate), so its ``nprobe`` stops growing once doubling it gains less than PLATEAU.

An IVF-PQ index ranks by its codes' approximate scores. When it is given the stored vectors
(``VectorIndex.exact``: the catalog's, by photo id), a search takes a longer shortlist from it
(``shortlist``: RERANK times k, at least RERANK_MIN, at most RERANK_MAX more than k) and ranks that
by the exact cosines, which are the scores it returns; scoring given photos (``every``) reads
their stored vectors directly. Exact and IVF-Flat indexes, whose scores are exact already, search
as before.

A filter (a folder, a date range) is an ``IdFilter``: a bitmap over the photo ids, or a range when
they are contiguous, made once and reused by every search with that filter, so a query allocates
nothing per matching photo.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from .atomic import atomic_write, atomic_write_text
from .errors import LibraryError

log = logging.getLogger(__name__)

IVF_THRESHOLD = 50_000
TARGET_RECALL = 0.97  # tuned on sample queries, so that real queries stay above 0.95
PLATEAU = 0.01  # a PQ index's nprobe stops doubling when recall@10 gains less than this
MIN_MEMORY = 64 << 20  # the smallest memory budget taken
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# A compressed (IVF-PQ) index's shortlist, re-ranked with the stored vectors: RERANK times the
# photos asked for, at least RERANK_MIN, and at most RERANK_MAX more than asked for (a page of
# 200 reads 800 stored vectors, about 1.2 MB at 384 dimensions).
RERANK = 4
RERANK_MIN = 64
RERANK_MAX = 1024

# The stored vectors of some photo ids: (the ids that have one, their unit vectors), in any order.
ExactVectors = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


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


def shortlist(k: int) -> int:
    """How many photos a compressed index is asked for, to re-rank k of them exactly."""
    return min(max(RERANK * k, RERANK_MIN), k + RERANK_MAX)


def recall_at(got: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(g[g >= 0]) & set(t)) for g, t in zip(got, truth, strict=True))
    return hits / truth.size


def parse_memory(text: str) -> int:
    """A memory budget as people write it ("8G", "512M", "1.5g", "2000000000") in bytes; a
    LibraryError saying what is wrong otherwise."""
    t = str(text).strip().lower().removesuffix("b").removesuffix("i")
    unit = t[-1:] if t[-1:] in _UNITS and not t[-1:].isdigit() else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        raise LibraryError(f"not a memory size: {text!r} (write it like 8G or 512M)")
    size = int(value * _UNITS[unit])
    if size < MIN_MEMORY:
        raise LibraryError(f"a memory budget of {text} is too small for an index: give at "
                           f"least {MIN_MEMORY >> 20}M")
    return size


def nlist_for(n: int) -> int:
    """The number of lists of an inverted file over ``n`` vectors: about 2·sqrt(n)."""
    return int(max(64, min(16384, 2 * math.sqrt(n))))


@dataclass(frozen=True)
class IndexPlan:
    """Which index ``n`` vectors get: "flat" (exact), "ivf" (IVF-Flat) or "ivfpq" (IVF-PQ with
    ``m`` one-byte codes a vector), over ``nlist`` lists."""

    kind: str
    nlist: int = 0
    m: int = 0

    def memory(self, n: int, dim: int) -> int:
        """Bytes the index takes in memory, about: codes and ids, and the lists' centroids."""
        if self.kind == "flat":
            return n * (4 * dim + 8)
        code = 4 * dim if self.kind == "ivf" else self.m
        pq_tables = 256 * dim * 4 if self.kind == "ivfpq" else 0
        return n * (code + 8) + self.nlist * dim * 4 + pq_tables

    def empty(self, dim: int) -> faiss.Index:
        """The untrained index this plan describes (inner product)."""
        if self.kind == "flat":
            return _flat(dim)
        quantizer = faiss.IndexFlatIP(dim)
        if self.kind == "ivf":
            ivf = faiss.IndexIVFFlat(quantizer, dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            ivf = faiss.IndexIVFPQ(quantizer, dim, self.nlist, self.m, 8,
                                   faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = 0
        ivf.cp.niter = 20
        return ivf


def pq_sizes(dim: int) -> list[int]:
    """The PQ code sizes (bytes a vector) a ``dim``-dimensional index can take, largest first:
    divisors of dim, at least two dimensions a byte."""
    return [m for m in range(dim // 2, 3, -1) if dim % m == 0]


def plan_for(n: int, dim: int, memory: int | None = None) -> IndexPlan:
    """The index for ``n`` vectors under a memory budget in bytes (None: no budget): exact below
    IVF_THRESHOLD, IVF-Flat while its vectors fit the budget, else IVF-PQ with the largest code
    that fits. A budget too small even for the smallest code is a LibraryError."""
    if n < IVF_THRESHOLD:
        return IndexPlan("flat")
    nlist = nlist_for(n)
    flat = IndexPlan("ivf", nlist)
    if memory is None or flat.memory(n, dim) <= memory:
        return flat
    for m in pq_sizes(dim):
        plan = IndexPlan("ivfpq", nlist, m)
        if plan.memory(n, dim) <= memory:
            return plan
    need = IndexPlan("ivfpq", nlist, (pq_sizes(dim) or [dim])[-1]).memory(n, dim)
    raise LibraryError(f"an index of {n:,} photos does not fit in {memory >> 20} MB: it needs "
                       f"at least {-(-need >> 20)} MB (give a larger memory budget)")


class IdFilter:
    """A set of photo ids to search within (a folder, a date range): a range when the ids are
    contiguous, else a bitmap over 0..max id (one bit a photo id). Made once for a filter and
    reused: membership, counting and the FAISS selector allocate nothing per matching id."""

    def __init__(self, ids) -> None:
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if len(ids) and ids[0] < 0:
            raise ValueError("photo ids are never negative")
        self.count = len(ids)
        self.low = int(ids[0]) if len(ids) else 0
        self.high = int(ids[-1]) + 1 if len(ids) else 0  # one past the largest
        self.contiguous = self.high - self.low == self.count
        self._bits: np.ndarray | None = None
        if not self.contiguous:
            self._bits = np.zeros((self.high + 7) // 8, dtype=np.uint8)
            for i in range(0, len(ids), 1 << 20):  # bounded temporaries for huge filters
                part = ids[i : i + (1 << 20)]
                np.bitwise_or.at(self._bits, part >> 3, (1 << (part & 7)).astype(np.uint8))
        self._selector = None

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return 0 if self._bits is None else self._bits.nbytes

    def contains(self, ids) -> np.ndarray:
        """A boolean mask: which of ``ids`` the filter holds."""
        ids = np.asarray(ids, dtype=np.int64)
        inside = (ids >= self.low) & (ids < self.high)
        if self._bits is None:
            return inside
        out = np.zeros(ids.shape, dtype=bool)
        held = ids[inside]
        out[inside] = (self._bits[held >> 3] >> (held & 7)) & 1 == 1
        return out

    def ids(self) -> np.ndarray:
        """Every id the filter holds, ascending (allocates them: for small filters)."""
        if self._bits is None:
            return np.arange(self.low, self.high, dtype=np.int64)
        return np.flatnonzero(np.unpackbits(self._bits, bitorder="little")).astype(np.int64)

    def selector(self) -> faiss.IDSelector:
        """The FAISS selector over this filter, made once (it reads the filter's own bitmap)."""
        if self._selector is None:
            if self._bits is None:
                self._selector = faiss.IDSelectorRange(self.low, self.high)
            else:
                self._selector = faiss.IDSelectorBitmap(len(self._bits),
                                                        faiss.swig_ptr(self._bits))
        return self._selector


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
        # The stored vectors by id (engine.vectors.VectorStore gives the catalog's): an IVF-PQ
        # index re-ranks its shortlist with them. None: its approximate scores are returned.
        self.exact: ExactVectors | None = None

    def __len__(self) -> int:
        return self._index.ntotal

    @property
    def kind(self) -> str:
        """"flat" (exact), "ivf" (IVF-Flat) or "ivfpq" (IVF-PQ)."""
        if isinstance(self._index, faiss.IndexIVFPQ):
            return "ivfpq"
        return "ivf" if isinstance(self._index, faiss.IndexIVF) else "flat"

    @property
    def plan(self) -> IndexPlan:
        """The kind, lists and code size of this index (as plan_for describes one)."""
        index = self._index
        if not isinstance(index, faiss.IndexIVF):
            return IndexPlan("flat")
        return IndexPlan(self.kind, index.nlist,
                         index.pq.M if isinstance(index, faiss.IndexIVFPQ) else 0)

    @property
    def nprobe(self) -> int:
        """The lists a search opens (0 for an exact index)."""
        return self._index.nprobe if isinstance(self._index, faiss.IndexIVF) else 0

    @property
    def outgrown(self) -> bool:
        """An exact index grown past IVF_THRESHOLD: ``build`` would now make an IVF index."""
        return self.kind == "flat" and len(self) >= IVF_THRESHOLD

    @classmethod
    def build(cls, dim: int, version: str, ids: np.ndarray, vecs: np.ndarray,
              use_gpu: bool | None = None, queries=None, memory: int | None = None
              ) -> VectorIndex:
        """The right index for this many vectors under ``memory`` bytes (plan_for): exact below
        IVF_THRESHOLD, IVF above. ``queries()``, called only when IVF is built, gives sample
        query vectors to tune it."""
        return cls.of_plan(plan_for(len(ids), dim, memory), dim, version, ids, vecs,
                           use_gpu, queries)

    @classmethod
    def of_plan(cls, plan: IndexPlan, dim: int, version: str, ids: np.ndarray,
                vecs: np.ndarray, use_gpu: bool | None = None, queries=None) -> VectorIndex:
        idx = cls(dim, version, use_gpu)
        if plan.kind == "flat":
            idx.add(ids, vecs)
        else:
            idx._index = _ivf_with_ids(ids, vecs, queries() if queries is not None else None,
                                       plan)
        return idx

    @classmethod
    def wrap(cls, index: faiss.Index, version: str, use_gpu: bool | None = None
             ) -> VectorIndex:
        """A VectorIndex over a FAISS index built elsewhere (engine.bigindex)."""
        idx = cls(index.d, version, use_gpu)
        idx._index = index
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

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | IdFilter | None = None,
               every: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for one query vector; ``allowed`` restricts to those ids (an
        array of a few ids, or an IdFilter, whose selector is made once and reused).
        ``every``: an inverted file looks in all its lists, so that every allowed photo is
        scored (to score given photos; a search probes only the lists nearest the query).
        An IVF-PQ index with ``exact`` vectors returns exact cosines (``reranked``)."""
        if self.exact is None or not isinstance(self._index, faiss.IndexIVFPQ):
            return self._search(query, k, allowed, every)
        return self.reranked(query, k, allowed, every)

    def reranked(self, query: np.ndarray, k: int, allowed: np.ndarray | IdFilter | None = None,
                 every: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``search`` through the stored vectors: the index's ``shortlist(k)`` best by their
        codes, or the given photos themselves when every one is to be scored, ranked by their
        exact cosines with the query. A photo without a stored vector is left out."""
        if self.exact is None:
            raise ValueError("re-ranking needs the stored vectors (VectorIndex.exact)")
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if every and allowed is not None and not isinstance(allowed, IdFilter):
            candidates = np.unique(np.asarray(allowed, dtype=np.int64))
        else:
            candidates = self._search(query, shortlist(k), allowed, every)[1]
        if len(candidates) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        ids, vecs = self.exact(candidates)
        if len(ids) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(self.dim)
        scores = np.ascontiguousarray(vecs, dtype=np.float32).reshape(len(ids), self.dim) @ q
        best = np.argsort(-scores, kind="stable")[:k]
        return scores[best], np.asarray(ids, dtype=np.int64)[best]

    def _search(self, query: np.ndarray, k: int, allowed: np.ndarray | IdFilter | None,
                every: bool) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        with self._lock:  # adds and removes are short; a conversion happens off to the side
            index, n = self._index, self._index.ntotal
            if n == 0 or k <= 0:
                return np.zeros(0, np.float32), np.zeros(0, np.int64)
            params = None
            if allowed is not None:
                if not isinstance(allowed, IdFilter):
                    allowed = np.ascontiguousarray(allowed, dtype=np.int64)
                if len(allowed) == 0:
                    return np.zeros(0, np.float32), np.zeros(0, np.int64)
                sel = (allowed.selector() if isinstance(allowed, IdFilter)
                       else faiss.IDSelectorBatch(allowed))
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
    def maybe_convert(self, vectors_of, queries=None, memory: int | None = None
                      ) -> threading.Thread | None:
        """Once an exact index passes IVF_THRESHOLD, build the IVF index on a thread and swap
        it in; searches go on against the exact index meanwhile. ``vectors_of()`` returns the
        current (ids, vecs) from the catalog; ``queries()`` sample query vectors; ``memory``
        the budget that picks IVF-Flat or IVF-PQ (plan_for)."""
        if not self.outgrown or self._converting:
            return None
        self._converting = True

        def work() -> None:
            try:
                ids, vecs = vectors_of()
                plan = plan_for(len(ids), self.dim, memory)
                if plan.kind == "flat":  # photos removed meanwhile: still an inverted file
                    plan = IndexPlan("ivf", nlist_for(len(ids)))
                ivf = _ivf_with_ids(ids, vecs, queries() if queries is not None else None, plan)
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
        if not isinstance(raw, (faiss.IndexIDMap2, faiss.IndexIVFFlat, faiss.IndexIVFPQ)):
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


def _ivf_with_ids(ids: np.ndarray, vecs: np.ndarray, queries: np.ndarray | None = None,
                  plan: IndexPlan | None = None) -> faiss.Index:
    """An inverted file over vectors all in memory: trained on a sample, filled, tuned."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    n, dim = vecs.shape
    plan = plan or IndexPlan("ivf", nlist_for(n))
    rng = np.random.default_rng(0)
    ivf = plan.empty(dim)
    ivf.train(vecs[rng.choice(n, training_size(plan, n), replace=False)])
    ivf.add_with_ids(vecs, ids)
    sets = tuning_sets(vecs[rng.choice(n, min(200, n), replace=False)], queries, rng)
    truths = [ids[faiss.knn(s, vecs, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]] for s in sets]
    tune_nprobe(ivf, sets, truths)
    return ivf


def training_size(plan: IndexPlan, n: int) -> int:
    """How many vectors train an inverted file: 32 a list, and enough for PQ's 256 centroids
    a sub-quantizer."""
    want = 32 * plan.nlist
    if plan.kind == "ivfpq":
        want = max(want, 64 * 256)
    return min(n, want)


def tuning_sets(photos: np.ndarray, queries: np.ndarray | None, rng) -> list[np.ndarray]:
    """Sample queries to tune nprobe on: photos' own vectors slightly moved, and the caller's
    query vectors (text queries), each normalised."""
    dim = photos.shape[1]
    q = np.array(photos, dtype=np.float32)
    q += rng.normal(0, 0.5 / math.sqrt(dim), q.shape).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    sets = [q]
    if queries is not None and len(queries):
        extra = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, dim)
        sets.append(extra / np.maximum(np.linalg.norm(extra, axis=1, keepdims=True), 1e-12))
    return sets


def tune_nprobe(ivf: faiss.Index, sets: list[np.ndarray], truths: list[np.ndarray]) -> int:
    """Double nprobe until recall@10 against exact search (``truths``: the exact top-10 ids of
    each set) reaches TARGET_RECALL on every set; a PQ index also stops when a doubling gains
    less than PLATEAU on every set (its codes, not its lists, limit it then)."""
    pq = isinstance(ivf, faiss.IndexIVFPQ)
    probe, before = 1, None
    while probe < ivf.nlist:
        ivf.nprobe = probe
        got = [recall_at(ivf.search(s, 10)[1], t) for s, t in zip(sets, truths, strict=True)]
        if all(r >= TARGET_RECALL for r in got):
            break
        if pq and before is not None and all(
                r - b < PLATEAU for r, b in zip(got, before, strict=True)):
            probe //= 2  # the doubling bought nothing: keep the cheaper one
            break
        before = got
        probe *= 2
    ivf.nprobe = min(probe, ivf.nlist)
    return ivf.nprobe


def file_name(version: str) -> str:
    """A model version as a file or folder name (its index files, its checkpoint folder)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in version)
