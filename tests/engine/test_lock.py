"""The writer lock: one process changes a library at a time, also where ``fcntl`` does not exist
(Windows), which is tried here by running the engine in a process that cannot import it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

import engine.lock
from engine import captions
from engine.errors import LibraryError
from engine.library import Library
from engine.lock import WriterLock
from tests.conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[2]

# Run with ``fcntl`` unavailable, as on Windows: open a library, index a folder while holding
# the writer lock, and on the word "release" let go; "try" instead asks for the lock once.
_NO_FCNTL = r"""
import json, sys
sys.modules["fcntl"] = None  # `import fcntl` now fails as it does on Windows
import engine.lock
from engine.errors import LibraryError
from engine.library import Library
spec = json.loads(sys.argv[1])
assert engine.lock.fcntl is None
lib = Library.open(spec["library"], device="cpu", default_model=spec["model"])
if spec["role"] == "try":
    try:
        with lib.writer.hold("removing a folder"):
            print("HELD", flush=True)
    except LibraryError as e:
        print("REFUSED", e, flush=True)
    sys.exit(0)
with lib.writer.hold("indexing"):
    report = lib.add_folders([spec["photos"]])
    print("HELD", report.added, len(lib.search("a photo", k=3)), flush=True)
    sys.stdin.readline()
print("RELEASED", flush=True)
"""


def _start(role: str, tmp_path: Path) -> subprocess.Popen:
    spec = {"role": role, "library": str(tmp_path / "lib"), "photos": str(tmp_path / "photos"),
            "model": TINY_MODEL}
    return subprocess.Popen([sys.executable, "-c", _NO_FCNTL, json.dumps(spec)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _ask(tmp_path: Path) -> str:
    p = _start("try", tmp_path)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    return out.strip()


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (40, 40), colour).save(folder / f"{i}.png")
    return folder


def test_without_fcntl_the_engine_locks_and_a_second_writer_is_refused(tmp_path, photo_folder):
    holder = _start("hold", tmp_path)
    try:
        first = holder.stdout.readline().split()
        assert first == ["HELD", "3", "3"], holder.stderr.read()
        answer = _ask(tmp_path)
        assert answer.startswith("REFUSED another Chikaku process is changing this library "
                                 f"(indexing, pid {holder.pid})"), answer
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "RELEASED"
    finally:
        holder.communicate(timeout=300)
    assert _ask(tmp_path) == "HELD"  # released: the next writer is let in


def test_without_fcntl_the_lock_goes_with_a_killed_writer(tmp_path, photo_folder):
    holder = _start("hold", tmp_path)
    try:
        assert holder.stdout.readline().startswith("HELD"), holder.stderr.read()
    finally:
        holder.kill()
        holder.communicate(timeout=300)
    assert _ask(tmp_path) == "HELD"


@pytest.fixture(params=["fcntl", "portable"])
def lock_kind(request, monkeypatch):
    if request.param == "portable":
        monkeypatch.setattr(engine.lock, "fcntl", None)
    return request.param


def test_a_second_holder_is_refused_naming_the_first(tmp_path, lock_kind):
    # Two lock objects on one file stand for two processes: each takes its own system lock.
    first, second = WriterLock(tmp_path / "writer.lock"), WriterLock(tmp_path / "writer.lock")
    with first.hold("training"):
        refused = r"changing this library \(training, pid \d+\); try again when it has finished"
        with pytest.raises(LibraryError, match=refused), second.hold("indexing"):
            pass
        assert first.busy and not second.busy
    with second.hold("indexing"):
        assert second.busy


def test_threads_of_one_process_wait_their_turn(tmp_path, lock_kind):
    lock = WriterLock(tmp_path / "writer.lock")
    held, go, order, errors = threading.Event(), threading.Event(), [], []

    def first() -> None:
        try:
            with lock.hold("indexing"):
                held.set()
                go.wait()
                order.append("first")
        except Exception as e:
            errors.append(str(e))
        finally:
            held.set()

    def second() -> None:
        held.wait()
        try:
            with lock.hold("removing a folder"):
                order.append("second")
        except Exception as e:
            errors.append(str(e))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    held.wait()
    go.set()
    for t in threads:
        t.join()
    assert errors == [] and order == ["first", "second"]
    assert not lock.busy


# -- every write to a library takes the writer lock ------------------------------------------------

OTHER_MODEL = {**TINY_MODEL, "seed": 7}


class _Witness:
    """Stands in for the writer lock's thread lock and says when a thread has to wait for it,
    so a test can let the holder go on once the other writer is either done or waiting."""

    def __init__(self, inner, settled: threading.Event) -> None:
        self.inner, self.settled = inner, settled

    def __enter__(self):
        if not self.inner.acquire(blocking=False):
            self.settled.set()
            self.inner.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.inner.release()


def _meanwhile(lib: Library, work) -> tuple[threading.Thread, list]:
    """Runs ``work`` on another thread and returns once it has finished or waits for the lock."""
    settled, outcome = threading.Event(), []
    lib.writer._thread_lock = _Witness(lib.writer._thread_lock, settled)

    def run() -> None:
        try:
            outcome.append(("ok", work()))
        except Exception as e:
            outcome.append((type(e).__name__, str(e)))
        finally:
            settled.set()

    t = threading.Thread(target=run)
    t.start()
    settled.wait()
    return t, outcome


def _orphan_vectors(lib: Library) -> int:
    with sqlite3.connect(lib.root / "catalog.db") as db:
        return db.execute("SELECT count(*) FROM embeddings WHERE model_version NOT IN "
                          "(SELECT version FROM models)").fetchone()[0]


def test_deleting_a_model_while_it_is_activated_waits_and_is_refused(tmp_path, photo_folder):
    lib = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    lib.add_folders([photo_folder])
    new = lib.add_model(OTHER_MODEL, activate=False)
    deleting: list = []

    def progress(p) -> None:
        if p.kind == "indexing" and not deleting:  # re-embedding has begun
            deleting.append(_meanwhile(lib, lambda: lib.delete_model(new)))

    lib.activate_model(new, progress=progress)
    thread, outcome = deleting[0]
    thread.join()
    assert lib.active_model_record().version == new
    assert outcome == [("LibraryError", "the active model cannot be deleted; activate another "
                                        "one first")]
    assert _orphan_vectors(lib) == 0
    assert len(lib.search("a red photo", k=3)) == 3
    lib.close()


def test_a_caption_import_racing_a_photo_removal_keeps_every_caption(tmp_path, photo_folder):
    lib = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    lib.add_folders([photo_folder])
    csv_file = tmp_path / "captions.csv"
    csv_file.write_text("image,caption\n0.png,a red square\n1.png,a green square\n"
                        "2.png,a blue square\n")
    gone = (photo_folder / "2.png").read_bytes()
    (photo_folder / "2.png").unlink()  # deleted on disk; the next pass removes it
    real_store, removing = captions._store, []

    def store(*args, **kw):  # between matching the names and storing the captions
        removing.append(_meanwhile(lib, lambda: lib.add_folders([photo_folder]).removed))
        return real_store(*args, **kw)

    captions._store = store
    try:
        report = captions.import_csv(lib, csv_file)
    finally:
        captions._store = real_store
    thread, outcome = removing[0]
    thread.join()
    assert (report.captions_added, report.photos_matched, report.unmatched) == (3, 3, [])
    assert outcome == [("ok", 1)]  # the removal went ahead after the import
    assert lib.status().photos == 2
    (photo_folder / "2.png").write_bytes(gone)  # the photo comes back with its caption
    lib.add_folders([photo_folder])
    assert {p: lib.captions(lib.photo_by_path(photo_folder / f"{p}.png").id)
            for p in "012"} == {"0": ["a red square"], "1": ["a green square"],
                                "2": ["a blue square"]}
    lib.close()


def _pause(lib, folder, csv_file):
    lib.set_folder_paused(folder, True)


def _caption(lib, folder, csv_file):
    lib.set_captions(lib.photo_by_path(folder / "0.png").id, ["a red square"])


def _import(lib, folder, csv_file):
    captions.import_csv(lib, csv_file)


def _delete(lib, folder, csv_file):
    lib.delete_model(next(m.version for m in lib.models() if not m.active))


@pytest.mark.parametrize("write", [_pause, _caption, _import, _delete])
def test_every_write_is_refused_while_another_process_changes_the_library(tmp_path,
                                                                          photo_folder, write):
    lib = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    lib.add_folders([photo_folder])
    csv_file = tmp_path / "captions.csv"
    csv_file.write_text("image,caption\n0.png,a red square\n")
    lib.add_model(OTHER_MODEL, activate=False)
    models = len(lib.models())
    other = WriterLock(lib.root / "writer.lock")  # another process's hold on the library
    with other.hold("indexing"), pytest.raises(
            LibraryError, match=r"another Chikaku process is changing this library \(indexing"):
        write(lib, photo_folder, csv_file)
    assert lib.paused_folders() == []
    assert lib.status().captions == 0
    assert len(lib.models()) == models
    write(lib, photo_folder, csv_file)  # once it has finished, the write goes through
    lib.close()
