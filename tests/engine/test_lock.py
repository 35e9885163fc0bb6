"""The writer lock: one process changes a library at a time, also where ``fcntl`` does not exist
(Windows), which is tried here by running the engine in a process that cannot import it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

import engine.lock
from engine.errors import LibraryError
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
