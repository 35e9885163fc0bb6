"""SIGKILL at random points. Indexing resumes with only what is missing and nothing committed is
lost; a crash while the index file is being replaced leaves an index that loads or is rebuilt;
training killed midway leaves the active model alone and can be resumed or started over."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from engine.config import TrainOptions
from engine.imageio import content_hash
from engine.index import VectorIndex, ids_digest
from engine.library import Library
from tests.events import train_events
from tests.reliability.helpers import (
    TINY_MODEL,
    active_version,
    caption_map,
    captioned_photos,
    embedding_pairs,
    integrity,
    photo_rows,
    reencode,
    shared_catalog,
    small_photos,
)

# Kills per phase: while the library is first indexed, and after the hand-typed captions exist
# (rounds of edits and moves, where a lost or misplaced caption would show).
PHASES = ("first indexing", "after captions")
KILLS = 10  # at least this many kills must land in each phase while a job is running
SEED = 8128
PHOTOS = 80


def _spec(library: Path, folder: Path, **kw) -> dict:
    return {"kind": "index", "library": str(library), "model": TINY_MODEL,
            "folders": [str(folder)], "batch_size": 4, "decode_workers": 2,
            "database_url": shared_catalog(), **kw}


def expected_todo(library: Path, folder: Path) -> int:
    """How many photos the next run has to embed: every one whose current content the catalog
    does not already hold a vector for (a moved photo keeps its vector)."""
    rows = photo_rows(library)
    embedded = {pid for pid, _ in embedding_pairs(library)}
    on_disk = {str(p): p for p in folder.iterdir()}
    moved_from = {r[3] for path, r in rows.items() if path not in on_disk and r[0] in embedded}
    todo = 0
    for path, p in on_disk.items():
        st, row = p.stat(), rows.get(path)
        if row is not None and (row[1], row[2]) == (st.st_size, st.st_mtime_ns) \
                and row[0] in embedded:
            continue
        if row is None and content_hash(p.read_bytes()) in moved_from:
            continue
        todo += 1
    return todo


def give_it_work(folder: Path, rng: random.Random, captions: dict[str, list[str]]) -> None:
    """Edit some photos (new content) and rename others (moves), as a person would."""
    files = sorted(folder.iterdir())
    picked = rng.sample(files, 32)
    for p in picked[:24]:
        reencode(p, quality=rng.randint(40, 95))
    for p in picked[24:]:
        new = p.with_name(f"{p.stem}-m{rng.randint(0, 9999)}.jpg")
        p.rename(new)
        captions[str(new)] = captions.pop(str(p))


def assert_catalog_matches(library: Path, folder: Path) -> None:
    rows = photo_rows(library)
    files = {str(p): p for p in folder.iterdir()}
    assert sorted(rows) == sorted(files)  # every photo exactly once (paths are unique)
    for path, (_pid, size, mtime, digest, status) in rows.items():
        st = files[path].stat()
        assert status == "ok" and (size, mtime) == (st.st_size, st.st_mtime_ns), path
        assert digest == content_hash(files[path].read_bytes()), path
    per_photo = Counter(pid for pid, _ in embedding_pairs(library))
    assert set(per_photo) == {r[0] for r in rows.values()}
    assert set(per_photo.values()) == {1}  # exactly one vector each, of the only model
    assert {v for _, v in embedding_pairs(library)} == {active_version(library)}
    assert integrity(library) == ["ok"]


@pytest.mark.usefixtures("catalog_url")  # on SQLite and on PostgreSQL
def test_indexing_killed_again_and_again_resumes_and_loses_nothing(tmp_path, job_server):
    folder, library = tmp_path / "photos", tmp_path / "library"
    small_photos(folder, PHOTOS, start=200)
    rng = random.Random(SEED)
    runs = rounds = 0
    kills, mid_batch = Counter(), Counter()  # per phase
    captions: dict[str, list[str]] = {}
    complete = False
    while runs < 200:
        phase = PHASES[1] if captions else PHASES[0]
        if complete and phase == PHASES[1] and kills[phase] >= KILLS and rounds >= 3:
            break
        if complete:  # all done: edits and moves give the next runs something to be killed in
            give_it_work(folder, rng, captions)
            rounds += 1
        todo = expected_todo(library, folder)
        # Half the kills count from the start (opening, scanning, diffing), half from the moment
        # embedding begins (batches being encoded and committed, the index being saved). After
        # the captions a run has less to do, so the kills come sooner.
        signal_at = "indexing" if runs % 2 else "start"
        longest = (0.25 if runs % 2 else 0.5) * (1 if phase == PHASES[0] else 0.5)
        delay = rng.uniform(0.0, longest) if kills[phase] < KILLS else None
        result = job_server.run(_spec(library, folder, pause=0.015, kill_after=delay,
                                      signal_at=signal_at))
        runs += 1
        assert not any(ln.startswith("ERROR") for ln in result.lines), result.lines
        total = result.value("TOTAL")
        if total is not None:  # it resumed: only the photos still missing were to be embedded
            assert int(total) == todo, (runs, result.lines)
        done = result.done
        complete = done is not None
        if complete:
            assert done["embedded"] == todo and done["skipped"] == 0, done
        else:
            assert result.killed, result.lines
            kills[phase] += 1
            mid_batch[phase] += total is not None and int(total) > 0  # died while embedding
        assert integrity(library) == ["ok"]
        if complete and not captions:  # hand-typed captions: they must survive what follows
            lib = Library.open(library, device="cpu", default_model=TINY_MODEL)
            for p in sorted(folder.iterdir()):
                texts = [f"a photo called {p.stem}", "typed by hand"]
                lib.set_captions(lib.photo_by_path(p).id, texts)
                captions[str(p)] = texts
            lib.close()
    print(f"\nreliability: {sum(kills.values())} kills survived in {runs} indexing runs, "
          f"{sum(mid_batch.values())} of them while photos were being embedded")
    for phase in PHASES:
        print(f"reliability:   {phase}: {kills[phase]} kills, {mid_batch[phase]} while "
              "embedding" + (f" ({rounds} rounds of edits and moves)" if phase == PHASES[1]
                             else ""))
    assert complete and all(kills[p] >= KILLS and mid_batch[p] >= KILLS * 2 // 5 for p in PHASES)

    assert_catalog_matches(library, folder)
    assert caption_map(library) == captions  # no caption lost, none moved to another photo
    lib = Library.open(library, device="cpu", default_model=TINY_MODEL)
    try:
        ids, vecs = lib.catalog.vectors(lib.model.version)
        saved = VectorIndex.load(lib.config.index_dir, lib.model.version, lib.model.dim,
                                 lib.catalog.generation(), library=lib.identity,
                                 ids=ids_digest(ids))
        assert saved is not None and len(saved) == PHOTOS  # the last run left a current index
        idx = lib.index
        q = lib.model.encode_texts(["a dog in the snow"])[0]
        scores, got = idx.search(q, PHOTOS + 5)
        assert sorted(got.tolist()) == sorted(ids.tolist()) and len(idx) == PHOTOS
        truth = dict(zip(ids.tolist(), (vecs @ q).tolist(), strict=True))
        assert np.allclose(scores, [truth[i] for i in got.tolist()], atol=1e-5)
    finally:
        lib.close()


@pytest.mark.usefixtures("catalog_url")
@pytest.mark.parametrize("crash_at", [".faiss", ".json"])
def test_crash_while_the_index_is_replaced_leaves_a_usable_index(tmp_path, job_server, crash_at):
    """Killed after the temporary index file is written, before (or between) the renames."""
    folder, library = tmp_path / "photos", tmp_path / "library"
    small_photos(folder, 12, start=300)
    first = job_server.run(_spec(library, folder))
    assert first.done and first.done["embedded"] == 12
    index_dir = library / "index"
    before = {p.name: p.read_bytes() for p in index_dir.iterdir()}
    small_photos(folder, 8, start=320)
    crashed = job_server.run(_spec(library, folder, crash_at=crash_at))
    assert crashed.killed and crashed.done is None
    assert any(p.name.endswith(".tmp") for p in index_dir.iterdir())  # it died mid-save
    if crash_at == ".faiss":  # the previous index is untouched and still loads
        assert {p.name: p.read_bytes() for p in index_dir.iterdir()
                if not p.name.endswith(".tmp")} == before
    import faiss

    faiss_file = next(p for p in index_dir.iterdir() if p.suffix == ".faiss")
    assert faiss.read_index(str(faiss_file)).ntotal in (12, 20)
    assert integrity(library) == ["ok"]
    lib = Library.open(library, device="cpu", default_model=TINY_MODEL)
    try:
        assert lib.status().photos == 20
        assert len(lib.index) == 20  # the stale file is recognised and rebuilt from the catalog
        for p in sorted(folder.iterdir())[:5]:
            assert lib.search(image=p, k=1)[0].path == str(p)
    finally:
        lib.close()


TRAIN = dict(steps=40, batch_size=8, eval_every=5, holdout=0.25, checkpoint_every=5,
             patience=100, seed=0)


def _train_spec(library: Path) -> dict:
    return {"kind": "train", "library": str(library), "model": TINY_MODEL, "pause": 0.05,
            "database_url": shared_catalog(),
            "options": {**TRAIN, "activate": "always"}, "signal_at_step": 12,
            "kill_after": 0.02}


def test_training_killed_midway_changes_nothing_and_resumes_or_starts_over(tmp_path, job_server):
    folder, library = tmp_path / "photos", tmp_path / "library"
    truth = captioned_photos(folder)
    lib = Library.open(library, device="cpu", default_model=TINY_MODEL)
    lib.add_folders([folder])
    for name, text in truth.items():
        lib.set_captions(lib.photo_by_path(folder / name).id, [text, f"{text}, seen close up"])
    active = lib.active_model_record().version
    top = [(h.photo_id, h.score) for h in lib.search("a blue bar", k=5)]
    lib.close()
    versions = []
    for resume in (True, False):
        killed = job_server.run(_train_spec(library))
        assert killed.killed and killed.done is None, killed.lines
        assert "EVENT step 12 " in killed.lines  # it died while training, after a checkpoint
        assert integrity(library) == ["ok"] and active_version(library) == active
        runs = list((library / "models" / "_runs").iterdir())
        assert len(runs) == 1 and (runs[0] / "state.pt").is_file()
        lib = Library.open(library, device="cpu", default_model=TINY_MODEL)
        try:
            assert [m.version for m in lib.models()] == [active] + versions[:1]
            assert [(h.photo_id, h.score) for h in lib.search("a blue bar", k=5)] == top
            events = train_events(lib, TrainOptions(**TRAIN, activate="never", resume=resume))
            resumed = [e.done for e in events if e.message.startswith("resuming at step")]
            assert resumed == ([10] if resume else []), [e.message for e in events]
            versions.append(events[-1].result.version)
            assert lib.active_model_record().version == active
            assert lib.status().captions == 2 * len(truth)
        finally:
            lib.close()
    assert versions[0] == versions[1]  # resuming gives exactly what an unbroken run gives
