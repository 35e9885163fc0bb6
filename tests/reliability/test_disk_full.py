"""A full disk or a read-only library: every write point fails with an engine error a person can
read (the command line prints ``chikaku: ...`` and exits 1, never a traceback), and nothing that
was committed before is damaged or lost."""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import engine.index
from engine import cli
from engine.config import TrainOptions
from engine.errors import EngineError
from engine.library import Library
from engine.training.features import FeatureCache
from tests.events import train_events
from tests.reliability.helpers import (
    ROOT,
    TINY_MODEL,
    caption_map,
    captioned_photos,
    fingerprints,
    integrity,
    photo_rows,
    small_photos,
)

NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
TRAIN = dict(steps=10, batch_size=8, eval_every=5, holdout=0.25, checkpoint_every=5)


@pytest.fixture
def library(tmp_path):
    """A library with captioned photos in it: what must survive."""
    folder = tmp_path / "photos"
    truth = captioned_photos(folder, 16)
    lib = Library.open(tmp_path / "library", device="cpu", default_model=TINY_MODEL)
    lib.add_folders([folder])
    for name, text in truth.items():
        lib.set_captions(lib.photo_by_path(folder / name).id, [text, "typed by hand"])
    yield lib
    lib.close()


def _kept(lib: Library) -> tuple:
    """What was committed: photos (path, size, hash) and captions."""
    rows = photo_rows(lib.root)
    return sorted((p, r[1], r[3]) for p, r in rows.items()), caption_map(lib.root)


def _assert_clear_cli_error(code: int, err: str, *words: str) -> None:
    """Exit status 1, no traceback, and a last line (after any progress bar) that explains."""
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert code == 1, err
    assert last.startswith("chikaku: ") and "Traceback" not in err, err
    assert any(w in last.lower() for w in words), err


def _limited(max_bytes: int):
    """For a child process: files cannot grow past max_bytes (writes fail with EFBIG, as on a
    full disk) and SIGXFSZ is ignored so that the write fails instead of killing it."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


def test_disk_full_while_indexing_is_a_clear_error_and_loses_nothing(library, tmp_path):
    before = _kept(library)
    library.close()
    more = tmp_path / "more"
    small_photos(more, 40, start=600)
    run = subprocess.run([sys.executable, "-m", "engine.cli", "index", str(more), "--library",
                          str(library.root), "--quiet", "--device", "cpu"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120,
                         preexec_fn=_limited(48 << 10))
    _assert_clear_cli_error(run.returncode, run.stderr, "disk", "full", "space")
    assert integrity(library.root) == ["ok"]
    after = _kept(library)
    assert set(before[0]) <= set(after[0]) and after[1] == before[1]
    again = Library.open(library.root, device="cpu", default_model=TINY_MODEL)
    try:  # with room again, the same command finishes the job
        report = again.add_folders([more])
        assert again.status().photos == 56 and report.skipped == {}
        assert len(again.index) == 56
    finally:
        again.close()


def test_disk_full_at_a_catalog_commit_is_a_clear_error(library, tmp_path, monkeypatch, capsys):
    before = _kept(library)
    more = tmp_path / "more"
    small_photos(more, 20, start=650)
    real_commit, writes = Session.commit, []

    def commit(self):
        wrote = self.connection().connection.driver_connection.in_transaction
        if wrote or self.new or self.dirty or self.deleted:  # reading works on a full disk
            writes.append(1)
            if len(writes) > 1:  # the disk fills up once the job has begun
                raise OperationalError("COMMIT", {}, sqlite3.OperationalError(
                    "database or disk is full"))
        return real_commit(self)

    monkeypatch.setattr(Session, "commit", commit)
    code = cli.main(["index", str(more), "--library", str(library.root), "--quiet",
                     "--device", "cpu"])
    _assert_clear_cli_error(code, capsys.readouterr().err, "full")
    with pytest.raises(EngineError, match="full"):  # a caption typed now: a clear refusal
        library.set_captions(1, ["typed while the disk is full"])
    monkeypatch.setattr(Session, "commit", real_commit)
    assert integrity(library.root) == ["ok"]
    after = _kept(library)
    assert set(before[0]) <= set(after[0]) and after[1] == before[1]
    library.add_folders([more])
    assert library.status().photos == 36


@pytest.mark.parametrize("failure", [NO_SPACE, RuntimeError("fwrite failed: No space left")])
def test_disk_full_while_saving_the_index_keeps_the_old_file_and_rebuilds(
        library, tmp_path, monkeypatch, failure):
    index_dir = library.config.index_dir
    saved = {p.name: p.read_bytes() for p in index_dir.iterdir()}
    real_write = engine.index.faiss.write_index

    def half_then_fail(index, path):
        real_write(index, path)
        Path(path).write_bytes(Path(path).read_bytes()[: os.path.getsize(path) // 2])
        raise failure

    monkeypatch.setattr(engine.index.faiss, "write_index", half_then_fail)
    more = tmp_path / "more"
    small_photos(more, 6, start=700)
    report = library.add_folders([more])  # the index is a cache: the job itself succeeds
    assert report.embedded == 6
    assert {p.name: p.read_bytes() for p in index_dir.iterdir()} == saved  # no torn file
    monkeypatch.setattr(engine.index.faiss, "write_index", real_write)
    library.close()
    again = Library.open(library.root, device="cpu", default_model=TINY_MODEL)
    try:
        assert len(again.index) == 22  # the stale file was recognised and rebuilt
        assert again.search(image=more / sorted(os.listdir(more))[0], k=1)[0].score > 0.999
    finally:
        again.close()


@pytest.mark.parametrize("where", ["model checkpoint", "training state"])
def test_disk_full_while_training_is_a_clear_error_and_the_active_model_stays(
        library, monkeypatch, capsys, where):
    active, models = library.active_model_record().version, len(library.models())
    if where == "model checkpoint":
        real = safetensors.torch.save_file

        def fail(tensors, filename, *a, **kw):
            real(tensors, filename, *a, **kw)
            Path(filename).write_bytes(b"\x00" * 100)
            raise NO_SPACE

        monkeypatch.setattr(safetensors.torch, "save_file", fail)
    else:
        def fail(obj, f, *a, **kw):
            Path(f).write_bytes(b"PK\x03\x04 half")
            raise NO_SPACE

        monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(EngineError, match="No space left") as err:
        train_events(library, TrainOptions(**TRAIN, activate="always"))
    assert str(err.value).startswith("cannot save the "), err.value  # says what, and where
    if where == "model checkpoint":  # (the command line saves no training state this early)
        code = cli.main(["train", "--steps", "10", "--batch-size", "8", "--holdout", "0.25",
                         "--library", str(library.root), "--device", "cpu"])
        _assert_clear_cli_error(code, capsys.readouterr().err, "space")
    assert library.active_model_record().version == active and len(library.models()) == models
    leftovers = [p for p in library.config.models_dir.rglob("*") if ".tmp" in p.name]
    assert leftovers == []
    assert integrity(library.root) == ["ok"]
    monkeypatch.undo()
    events = train_events(library, TrainOptions(**TRAIN, activate="always"))
    assert events[-1].result.activated  # with room again, training goes through


def test_a_feature_cache_that_cannot_be_saved_is_only_lost_time(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "features" / "cache.npz")
    cache.put("a", np.ones(4, dtype=np.float32))

    def fail(*a, **kw):
        raise NO_SPACE

    monkeypatch.setattr(np, "savez", fail)
    cache.save()  # no exception: training goes on without the cache on disk
    assert list((tmp_path / "features").iterdir()) == []


def _without_root_powers():
    """For a child process: as root, drop the capabilities that let root write anywhere, so
    that file permissions apply to it as to anyone."""
    if os.geteuid() != 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")

    try:  # can this system drop them at all?
        subprocess.run(["true"], preexec_fn=drop, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"running as root and cannot drop root's file powers here ({e})")
    return drop


def _set_writable(root: Path, writable: bool) -> None:
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files, ""]:
            p = Path(dirpath, name)
            mode = p.stat().st_mode
            bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
            os.chmod(p, (mode | stat.S_IWUSR) if writable else (mode & ~bits))


def test_a_read_only_library_is_a_clear_error_and_stays_intact(library, tmp_path):
    drop = _without_root_powers()
    before, files = _kept(library), None
    library.close()
    more = tmp_path / "more"
    small_photos(more, 4, start=720)
    _set_writable(library.root, False)
    try:
        files = fingerprints(library.root)
        for args in (["index", str(more)], ["status"], ["search", "a red disc"]):
            run = subprocess.run(
                [sys.executable, "-m", "engine.cli", *args, "--library", str(library.root),
                 "--device", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                preexec_fn=drop)
            if args[0] == "index" or run.returncode != 0:  # reading may work; writing cannot
                _assert_clear_cli_error(run.returncode, run.stderr, "read-only", "readonly",
                                        "permission", "cannot")
        assert fingerprints(library.root) == files
    finally:
        _set_writable(library.root, True)
    assert integrity(library.root) == ["ok"]
    assert _kept(library) == before
