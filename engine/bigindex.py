"""Inverted files over more vectors than memory holds: FAISS's recipe for large indexes.

1. train the empty index (engine.index.IndexPlan) on a sample of the vectors;
2. add the vectors shard by shard, each shard a copy of the trained index filled with one chunk
   and written to its own file, ``workers`` shards at a time;
3. merge the shards' lists, either into memory (``merge_from``: the result is an ordinary index,
   saved and loaded like any other) or on disk into one ``.ivfdata`` file
   (``OnDiskInvertedLists``: the operating system pages lists in as searches open them).

Only the chunks being added are float vectors in memory, never all of them; the result holds
codes (``m`` bytes a vector for IVF-PQ). The exact top-10 of the tuning queries is kept as the
chunks pass, so nprobe is tuned (engine.index.tune_nprobe) without a second pass over them.

A merged on-disk index is read back with a plain ``faiss.read_index``, which maps the .ivfdata
file itself: reading it with ``IO_FLAG_MMAP`` crashed at search with faiss-cpu 1.15.1.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

import faiss
import numpy as np

from .index import IndexPlan, tune_nprobe, tuning_sets

Shard = tuple[np.ndarray, np.ndarray]  # (ids, unit vectors)


class ExactTop:
    """The exact top-k ids of some queries over vectors seen a chunk at a time."""

    def __init__(self, queries: np.ndarray, k: int = 10) -> None:
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.k = k
        self.scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        self.ids = np.full((len(queries), k), -1, dtype=np.int64)

    def update(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if len(ids) == 0:
            return
        scores, at = faiss.knn(self.queries, vecs, min(self.k, len(ids)),
                               metric=faiss.METRIC_INNER_PRODUCT)
        both_s = np.concatenate([self.scores, scores], axis=1)
        both_i = np.concatenate([self.ids, ids[at]], axis=1)
        best = np.argsort(-both_s, axis=1, kind="stable")[:, : self.k]
        self.scores = np.take_along_axis(both_s, best, axis=1)
        self.ids = np.take_along_axis(both_i, best, axis=1)


def build_sharded(plan: IndexPlan, sample: np.ndarray, shards: Iterable[Shard], workdir: Path,
                  queries: np.ndarray | None = None, ondisk: Path | None = None,
                  workers: int = 2, progress: Callable[[int], None] | None = None
                  ) -> faiss.Index:
    """An inverted file (``plan``: "ivf" or "ivfpq") over every shard's vectors, trained on
    ``sample`` and tuned on photos of the sample and ``queries``. ``workdir`` holds the shard
    files while it is built (they are removed). ``ondisk``: the .ivfdata file the merged lists
    are written to (the index then reads them from there; save it with faiss.write_index);
    None: merged into memory. ``progress(n)`` after each shard with the vectors added so far."""
    if plan.kind not in ("ivf", "ivfpq"):
        raise ValueError(f"a sharded build makes an inverted file, not {plan.kind!r}")
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    rng = np.random.default_rng(0)
    trained = plan.empty(sample.shape[1])
    trained.train(sample)
    sets = tuning_sets(sample[rng.choice(len(sample), min(200, len(sample)), replace=False)],
                       queries, rng)
    exact = [ExactTop(s) for s in sets]
    workdir.mkdir(parents=True, exist_ok=True)
    paths = _add_shards(trained, shards, workdir, exact, max(1, workers), progress)
    try:
        merged = (_merge_in_memory(trained, paths) if ondisk is None
                  else _merge_on_disk(trained, paths, ondisk))
    finally:
        for p in paths:
            p.unlink(missing_ok=True)
    tune_nprobe(merged, sets, [e.ids for e in exact])
    return merged


def _add_shards(trained: faiss.Index, shards: Iterable[Shard], workdir: Path,
                exact: list[ExactTop], workers: int, progress) -> list[Path]:
    """Each shard added to its own copy of the trained index and written to workdir; at most
    ``workers`` shards in flight, so at most that many chunks of floats are held."""
    threads = max(1, (os.cpu_count() or 1) // workers)

    def add(number: int, ids: np.ndarray, vecs: np.ndarray) -> Path:
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(threads)  # per calling thread: the shards share the cores
        try:
            shard = faiss.clone_index(trained)
            shard.add_with_ids(vecs, ids)
            path = workdir / f"shard-{number:05d}.faiss"
            faiss.write_index(shard, str(path))
            return path
        finally:
            faiss.omp_set_num_threads(before)

    paths: list[Path] = []
    added = 0
    pending: set[Future] = set()
    with ThreadPoolExecutor(workers, thread_name_prefix="chikaku-shard") as pool:
        for number, (ids, vecs) in enumerate(shards):
            ids = np.ascontiguousarray(ids, dtype=np.int64)
            vecs = np.ascontiguousarray(vecs, dtype=np.float32)
            for e in exact:
                e.update(ids, vecs)
            if len(pending) >= workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                paths += [f.result() for f in done]
            pending.add(pool.submit(add, number, ids, vecs))
            added += len(ids)
            del ids, vecs
            if progress is not None:
                progress(added)
        paths += [f.result() for f in pending]
    return sorted(paths)


def _merge_in_memory(trained: faiss.Index, paths: list[Path]) -> faiss.Index:
    merged = faiss.clone_index(trained)
    for p in paths:
        merged.merge_from(faiss.read_index(str(p)), 0)
    return merged


def _merge_on_disk(trained: faiss.Index, paths: list[Path], ivfdata: Path) -> faiss.Index:
    """The shards' lists concatenated into one on-disk file, list by list; the shards are
    mapped (IO_FLAG_MMAP), not read into memory."""
    ivfdata.unlink(missing_ok=True)
    shards = [faiss.read_index(str(p), faiss.IO_FLAG_MMAP) for p in paths]
    lists = faiss.InvertedListsPtrVector()
    for shard in shards:
        lists.push_back(faiss.extract_index_ivf(shard).invlists)
    merged = faiss.clone_index(trained)
    ondisk = faiss.OnDiskInvertedLists(merged.nlist, merged.code_size, str(ivfdata))
    merged.ntotal = ondisk.merge_from_multiple(lists.data(), lists.size(), False)
    merged.replace_invlists(ondisk, True)
    ondisk.this.disown()  # the index owns its lists now
    del shards, lists
    return merged


def read_ondisk(header: Path) -> faiss.Index:
    """A merged on-disk index saved with faiss.write_index, read back (plain read_index: it
    maps the .ivfdata file named in the header)."""
    return faiss.read_index(str(header))
