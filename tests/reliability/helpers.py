"""Shared pieces of the reliability tests: small photos, a look into the catalog with plain
sqlite3 or psycopg (so a check never goes through the code it checks), file fingerprints, and the
client side of the job runner in jobs.py."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from tests.conftest import TINY_MODEL, dataset_images

ROOT = Path(__file__).resolve().parents[2]  # the repository, where `python -m` finds the code


def small_photos(folder: Path, n: int, start: int = 0, side: int = 64,
                 quality: int = 85) -> list[Path]:
    """n real photos from the shared data set, re-encoded small so that decoding is cheap."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in dataset_images()[start : start + n]:
        with Image.open(src) as im:
            im = im.convert("RGB")
            im.thumbnail((side, side))
            dst = folder / src.name
            im.save(dst, "JPEG", quality=quality)
        out.append(dst)
    return out


PAINTS = {"red": (210, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210),
          "yellow": (235, 215, 40)}


def captioned_photos(folder: Path, n: int = 24) -> dict[str, str]:
    """n synthetic photos (a coloured disc or bar on a dark ground) and what each shows."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    names = list(PAINTS)
    for i in range(n):
        colour, disc = names[i % 4], (i // 4) % 2 == 0
        im = Image.new("RGB", (48, 48), (i * 7 % 50, 20, 30))
        d = ImageDraw.Draw(im)
        box = (4 + i % 9, 6 + i % 7, 36 + i % 9, 38 + i % 7)
        (d.ellipse if disc else d.rectangle)(box, fill=PAINTS[colour])
        im.save(folder / f"{i:03d}.png")
        out[f"{i:03d}.png"] = f"a {colour} {'disc' if disc else 'bar'}"
    return out


def reencode(path: Path, quality: int) -> None:
    """Rewrite a photo with other compression: new bytes, new size and mtime, same picture."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    im.save(path, "JPEG", quality=quality)


def shared_catalog() -> str | None:
    """The PostgreSQL catalog the test's libraries use (CHIKAKU_DATABASE_URL), if any."""
    url = os.environ.get("CHIKAKU_DATABASE_URL")
    return url if url and url.startswith("postgresql") else None


def db(library: Path) -> closing:
    """A plain connection to the library's catalog: sqlite3, or psycopg for PostgreSQL."""
    url = shared_catalog()
    if url is not None:
        import psycopg
        from sqlalchemy.engine import make_url

        return closing(psycopg.connect(make_url(url).set(drivername="postgresql")
                                       .render_as_string(hide_password=False)))
    return closing(sqlite3.connect(library / "catalog.db", timeout=30))


# PostgreSQL keeps its files consistent itself; what is checked there is what the catalog's own
# rows promise each other: no vector or caption of a photo that is gone, and exactly one row of
# words for each searchable photo.
_PG_CHECKS = {
    "embedding of no photo": "SELECT e.photo_id FROM embeddings e LEFT JOIN photos p "
                             "ON p.id = e.photo_id WHERE p.id IS NULL",
    "caption of no photo": "SELECT c.id FROM captions c LEFT JOIN photos p "
                           "ON p.id = c.photo_id WHERE p.id IS NULL",
    "words of no searchable photo": "SELECT t.photo_id FROM photo_text t LEFT JOIN photos p "
                                    "ON p.id = t.photo_id AND p.status = 'ok' WHERE p.id IS NULL",
    "searchable photo without words": "SELECT p.id FROM photos p LEFT JOIN photo_text t "
                                      "ON t.photo_id = p.id WHERE p.status = 'ok' "
                                      "AND t.photo_id IS NULL",
}


def integrity(library: Path) -> list[str]:
    if shared_catalog() is not None:
        rows = ["ok"]
        for what, sql in _PG_CHECKS.items():
            rows += [f"{what}: {r}" for r in _rows(library, sql)]
        return rows
    if not (library / "catalog.db").exists():
        return ["ok"]  # killed before the catalog was made: nothing to damage
    with db(library) as con:
        rows = [r[0] for r in con.execute("PRAGMA integrity_check")]
        rows += [f"foreign key: {r}" for r in con.execute("PRAGMA foreign_key_check")]
    return rows


def active_version(library: Path) -> str:
    with db(library) as con:
        return con.execute("SELECT version FROM models WHERE active").fetchone()[0]


def _rows(library: Path, sql: str) -> list[tuple]:
    """Rows of a query; none while the catalog or its tables do not exist yet."""
    if shared_catalog() is not None:
        import psycopg

        with db(library) as con:
            try:
                return [tuple(r) for r in con.execute(sql)]
            except psycopg.errors.UndefinedTable:
                return []
    if not (library / "catalog.db").exists():
        return []
    with db(library) as con:
        try:
            return list(con.execute(sql))
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise


def photo_rows(library: Path) -> dict[str, tuple]:
    """path -> (id, size, mtime_ns, content_hash, status) for every photo in the catalog."""
    rows = _rows(library, "SELECT path, id, size, mtime_ns, content_hash, status FROM photos")
    return {r[0]: tuple(r[1:]) for r in rows}


def embedding_pairs(library: Path) -> list[tuple[int, str]]:
    return _rows(library, "SELECT photo_id, model_version FROM embeddings")


def caption_map(library: Path) -> dict[str, list[str]]:
    """photo path -> its captions, in order."""
    with db(library) as con:
        rows = con.execute("SELECT p.path, c.text FROM captions c JOIN photos p "
                           "ON p.id = c.photo_id ORDER BY c.id")
        out: dict[str, list[str]] = {}
        for path, text in rows:
            out.setdefault(path, []).append(text)
        return out


def fingerprint(path: Path) -> tuple:
    """What must not change about a photo: its bytes (hashed), size and modification time."""
    st = os.stat(path, follow_symlinks=False)
    if st.st_size > 64 << 20:  # the sparse giant: its size, blocks and times say enough
        return st.st_size, st.st_mtime_ns, st.st_blocks
    with open(path, "rb") as f:
        digest = hashlib.blake2b(f.read(), digest_size=16).hexdigest()
    return st.st_size, st.st_mtime_ns, digest


def fingerprints(folder: Path) -> dict[bytes, tuple]:
    """Every file under folder (bytes names, so that undecodable names are kept exactly)."""
    out = {}
    for dirpath, _dirs, files in os.walk(os.fsencode(folder)):
        for name in files:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                out[p] = fingerprint(Path(os.fsdecode(p)))
    return out


@dataclass
class JobResult:
    lines: list[str] = field(default_factory=list)
    status: int = 0

    @property
    def killed(self) -> bool:
        return os.WIFSIGNALED(self.status) and os.WTERMSIG(self.status) == signal.SIGKILL

    @property
    def done(self) -> dict | None:
        """The job's report if it finished before anything stopped it."""
        for line in self.lines:
            if line.startswith("DONE "):
                return json.loads(line[5:])
        return None

    def value(self, prefix: str) -> str | None:
        return next((ln[len(prefix) + 1:] for ln in self.lines if ln.startswith(prefix + " ")),
                    None)


class JobServer:
    """Talks to ``python -m tests.reliability.jobs --serve``: one forked child a job."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.jobs", "--serve"], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def run(self, spec: dict, timeout: float = 120) -> JobResult:
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        result = JobResult()
        while True:
            line = self._lines.get(timeout=timeout)
            if line is None:
                raise RuntimeError(f"the job server stopped: {result.lines}")
            if line.startswith("FORKED "):
                continue
            if line.startswith("EXIT "):
                result.status = int(line.split()[2])
                return result
            result.lines.append(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def run_job(spec: dict, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """One job in a fresh interpreter (for rlimits and the like, set through ``kw``)."""
    return subprocess.run([sys.executable, "-m", "tests.reliability.jobs", json.dumps(spec)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kw)


__all__ = ["JobResult", "JobServer", "run_job", "captioned_photos", "ROOT", "TINY_MODEL",
           "small_photos", "reencode", "db", "shared_catalog", "integrity", "active_version", "photo_rows",
           "embedding_pairs", "caption_map", "fingerprint", "fingerprints"]
