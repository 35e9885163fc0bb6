"""Concurrent use. Threads search while the library is being indexed and while it switches
models back and forth (re-embedding): no "database is locked", no deadlock, and every result
comes from one model version: each hit's score is the cosine between the query and that photo's
stored vector under one model, the same model for the whole result. Several processes on one
library: a second writer is refused with a clear message, readers keep reading, and the
catalog and index stay whole."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.library import Library
from engine.models import create_model
from tests.reliability.helpers import (
    ROOT,
    TINY_MODEL,
    integrity,
    photo_rows,
    small_photos,
)

OTHER_MODEL = {**TINY_MODEL, "seed": 7}
QUERIES = ["a dog running", "children playing", "a man on a bike", "water", "a red car",
           "two people", "snow", "a black and white dog"]
SEARCHERS = 4
SWITCHES = 8


def _stored(lib: Library, version: str) -> dict[int, np.ndarray]:
    ids, vecs = lib.catalog.vectors(version)
    return dict(zip(ids.tolist(), vecs, strict=True))


def _consistent(hits, queries: dict[str, np.ndarray], vectors: dict[str, dict]) -> str | None:
    """The model version whose query and stored vectors give exactly these scores, if any."""
    for version, q in queries.items():
        stored = vectors[version]
        if all(pid in stored and abs(float(stored[pid] @ q) - score) < 1e-4
               for pid, score in hits):
            return version
    return None


def test_searching_while_indexing_and_switching_models_is_safe_and_never_mixes_models(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    small_photos(first, 40, start=800)
    small_photos(second, 40, start=840)
    lib = Library.open(tmp_path / "library", device="cpu", default_model=TINY_MODEL)
    lib.add_folders([first])
    a = lib.active_model_record().version
    b = lib.add_model(OTHER_MODEL, activate=False)
    real_query_vector = lib.query_vector

    def slow_query_vector(*args, **kw):  # a slower text encoder: a wider window for races
        time.sleep(0.002)
        return real_query_vector(*args, **kw)

    lib.query_vector = slow_query_vector
    stop, errors, results = threading.Event(), [], []

    def search_loop(seed: int) -> None:
        n = seed
        while not stop.is_set():
            query = QUERIES[n % len(QUERIES)]
            n += 1
            try:
                hits = lib.search(query, k=8)
                results.append((query, [(h.photo_id, h.score) for h in hits]))
            except Exception as e:
                errors.append(f"search: {type(e).__name__}: {e}")

    def index_job() -> None:
        try:
            lib.add_folders([second])
        except Exception as e:
            errors.append(f"index: {type(e).__name__}: {e}")

    def switch_job() -> None:
        try:
            for i in range(SWITCHES):
                lib.activate_model(b if i % 2 == 0 else a)
        except Exception as e:
            errors.append(f"switch: {type(e).__name__}: {e}")

    searchers = [threading.Thread(target=search_loop, args=(i,), daemon=True)
                 for i in range(SEARCHERS)]
    writers = [threading.Thread(target=index_job, daemon=True),
               threading.Thread(target=switch_job, daemon=True)]
    for t in searchers + writers:
        t.start()
    for t in writers:
        t.join(timeout=180)
    during = len(results)
    stop.set()
    for t in searchers:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in searchers + writers), "a thread is stuck (deadlock?)"
    assert errors == []
    assert during >= 40  # the searches really ran while the library was changing

    queries, vectors = {}, {}
    for version, config in ((a, TINY_MODEL), (b, OTHER_MODEL)):
        model = create_model(config, device="cpu")
        assert model.version == version
        queries[version] = dict(zip(QUERIES, model.encode_texts(QUERIES), strict=True))
        vectors[version] = _stored(lib, version)
    seen = set()
    for query, hits in results:
        assert hits, query
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        version = _consistent(hits, {v: q[query] for v, q in queries.items()}, vectors)
        assert version is not None, (query, hits)  # one model's vectors and query, not a mix
        seen.add(version)
    assert seen == {a, b}  # both models answered at some point
    print(f"\nreliability: {len(results)} searches during indexing and {SWITCHES} model "
          "switches, none mixed two models")

    final = lib.active_model_record().version
    assert final == a and lib.status().photos == 80
    assert integrity(lib.root) == ["ok"]
    probe = queries[final][QUERIES[0]]
    _, ids = lib.index.search(probe, 100)
    assert sorted(ids.tolist()) == sorted(vectors[final])
    lib.close()


def _process(spec: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.reliability.jobs", json.dumps(spec)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _start_together(procs: list[subprocess.Popen], go: Path, timeout: float = 120) -> None:
    """Wait until every process is waiting at its barrier, then let them all go at once."""
    deadline = time.monotonic() + timeout
    while len(list(go.parent.glob(go.name + ".*.ready"))) < len(procs):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()  # only our own children, started just above
            pytest.fail("a process did not reach its starting line: "
                        + " | ".join(p.communicate()[1][-2000:] for p in procs))
        time.sleep(0.01)
    go.touch()


def _finish(p: subprocess.Popen) -> tuple[dict | None, str]:
    out, err = p.communicate(timeout=180)
    done = next((json.loads(ln[5:]) for ln in out.splitlines() if ln.startswith("DONE ")), None)
    error = next((ln for ln in out.splitlines() if ln.startswith("ERROR ")), "")
    return done, error + err[-2000:]


@pytest.mark.parametrize("fresh", [False, True], ids=["existing library", "new library"])
def test_two_writers_and_a_reader_in_separate_processes(tmp_path, fresh):
    library, go = tmp_path / "library", tmp_path / "go"
    folders = [tmp_path / n for n in ("base", "one", "two")]
    for i, folder in enumerate(folders):
        small_photos(folder, 16, start=900 + 16 * i)
    if not fresh:
        lib = Library.open(library, device="cpu", default_model=TINY_MODEL)
        lib.add_folders([folders[0]])
        lib.close()
    common = {"library": str(library), "model": TINY_MODEL, "wait_for": str(go),
              "wait_at": "open" if fresh else "work"}
    writers = [_process({"kind": "index", "folders": [str(f)], "pause": 0.03, **common})
               for f in folders[1:]]
    reader = [] if fresh else [_process({"kind": "search", "seconds": 2.0, **common})]
    _start_together(writers + reader, go)
    outcomes = [_finish(p) for p in writers]
    done = [d for d, _ in outcomes if d is not None]
    refused = [e for d, e in outcomes if d is None]
    assert done, outcomes
    for why in refused:  # the one that lost the race was told why, in words
        assert "ERROR LibraryError: another Chikaku process is changing this library" in why, why
    if reader:
        searched, err = _finish(reader[0])
        assert searched and searched["error_count"] == 0 and searched["searches"] > 10, \
            (searched, err)
    assert integrity(library) == ["ok"]
    expected = (0 if fresh else 16) + 16 * len(done)
    rows = photo_rows(library)
    assert len(rows) == expected and all(r[4] == "ok" for r in rows.values())
    lib = Library.open(library, device="cpu", default_model=TINY_MODEL)
    try:
        _, ids = lib.index.search(lib.model.encode_texts(["a dog"])[0], 100)
        assert sorted(ids.tolist()) == sorted(r[0] for r in rows.values())
    finally:
        lib.close()
