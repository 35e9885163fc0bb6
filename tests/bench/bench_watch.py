"""How soon a watched library is current after a camera import, and what it cost to get there.

    .venv/bin/python tests/bench/bench_watch.py [--files 2000] [--model bundled|tiny] [--polling]
        [--device cpu|cuda]

A watcher with its default options watches an empty Pictures folder. Another process then copies
--files JPEGs (flickr8k-1k photos, each copy slightly brightened so no two files are the same)
into DCIM/100CANON, DCIM/101CANON ... as fast as the disk takes them, like a camera import.
Measured, for the import and for three changes after it (one photo copied in, the DCIM folder
renamed, the folder deleted): seconds from the last file landing until the library is current
(the catalog holds exactly the files on disk and the watcher is idle), how much of that was
spent inside indexing passes (the rest is the quiet period and the watcher's own overhead),
embeddings computed (the sum of IndexReport.embedded over the passes: an import should cost one
per file, the other changes none) and the number of passes. Table last.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import func, select

from engine.catalog import Photo
from engine.library import Library
from engine.progress import Progress
from engine.watching.watcher import Watcher, WatchOptions

DATASET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "flickr8k-1k"
TINY_MODEL = {"family": "scratch", "dim": 32, "width": 16, "input_size": 32, "seed": 0}

COPIER = r"""
import os, shutil, sys, time
src, dst = sys.argv[1], sys.argv[2]
for i, name in enumerate(sorted(os.listdir(src))):
    folder = os.path.join(dst, f"{100 + i // 1000}CANON")
    os.makedirs(folder, exist_ok=True)
    shutil.copyfile(os.path.join(src, name), os.path.join(folder, name))
print(time.time())
"""


def brighter(src: Path, shift: int) -> bytes:
    pixels = np.asarray(Image.open(src).convert("RGB"), dtype=np.int16) + shift
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def stage(folder: Path, count: int) -> list[Path]:
    """``count`` distinct JPEGs: the data set's photos, then brighter re-encodes of them."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((DATASET / "images").iterdir())
    out = []
    for i in range(count):
        src, variant = sources[i % len(sources)], i // len(sources)
        path = folder / f"IMG_{i:04d}.jpg"
        if variant == 0:
            shutil.copyfile(src, path)
        else:
            path.write_bytes(brighter(src, 2 * variant))
        out.append(path)
    return out


def photos_under(lib: Library, folder: Path) -> int:
    prefix = str(folder) + os.sep
    with lib.catalog.session() as s:
        return s.scalar(select(func.count()).select_from(Photo)
                        .where(Photo.path.startswith(prefix, autoescape=True))) or 0


def until_current(lib: Library, watcher: Watcher, root: Path, total: int,
                  folder: Path | None = None) -> float:
    """Wall-clock time at which the catalog holds ``total`` photos under ``root`` (all of them
    under ``folder`` when given, less one stray) and the watcher is idle."""
    while True:
        if watcher.idle and photos_under(lib, root) == total and (
                folder is None or photos_under(lib, folder) >= total - 1):
            return time.time()
        time.sleep(0.02)


class Tally:
    """The status callback: events with the time each came."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Progress]] = []

    def __call__(self, event: Progress) -> None:
        self.events.append((time.time(), event))
        if event.kind in ("fallback", "error", "unavailable"):
            print(f"  [{event.kind}] {event.message}")

    def since(self, mark: int) -> tuple[int, int, float]:
        """Embeddings, passes, and seconds spent in passes since event ``mark``."""
        embedded = passes = 0
        busy, started = 0.0, None
        for t, e in self.events[mark:]:
            if e.kind == "indexing" and e.total == 0:
                started = t
            elif e.kind == "indexed" and started is not None:
                embedded += e.result.embedded
                passes, busy = passes + 1, busy + t - started
        return embedded, passes, busy


def run(args, work: Path) -> list[tuple]:
    staged = stage(work / "staging", args.files)
    root = work / "Pictures"
    root.mkdir()
    lib = Library.open(work / "library", device=args.device,
                       default_model=TINY_MODEL if args.model == "tiny" else None)
    lib.model  # noqa: B018 (load the model before timing)
    tally = Tally()
    watcher = Watcher(lib, [root], on_event=tally, polling=True if args.polling else None)
    watcher.start()
    until_current(lib, watcher, root, 0)
    rows = []

    def measure(label: str, files: int, change, total: int, folder: Path | None) -> None:
        mark = len(tally.events)
        landed = change()
        seconds = until_current(lib, watcher, root, total, folder) - landed
        rows.append((label, files, seconds, *tally.since(mark)))
        print(f"  {label}: current {seconds:.2f} s after the last file landed")

    dcim, n = root / "DCIM", len(staged)
    copier = [sys.executable, "-c", COPIER, str(work / "staging"), str(dcim)]
    measure(f"import of {n} photos", n,
            lambda: float(subprocess.run(copier, capture_output=True, text=True,
                                         check=True).stdout), n, dcim)
    extra = brighter(sorted((DATASET / "images").iterdir())[0], -7)
    measure("one photo copied in", 1,
            lambda: ((root / "one.jpg").write_bytes(extra), time.time())[1], n + 1, dcim)
    measure(f"folder of {n} renamed", n,
            lambda: (dcim.rename(root / "Camera"), time.time())[1], n + 1, root / "Camera")
    measure(f"folder of {n} deleted", n,
            lambda: (shutil.rmtree(root / "Camera"), time.time())[1], 1, None)
    watcher.stop()
    lib.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--model", choices=("bundled", "tiny"), default="bundled")
    ap.add_argument("--polling", action="store_true", help="poll instead of native events")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="chikaku-bench-watch-") as tmp:
        rows = run(args, Path(tmp))
    opts = WatchOptions()
    how = f"polling every {opts.poll_interval:g} s" if args.polling else "native events"
    print()
    print(f"cores: {os.cpu_count()}  model: {args.model}  {how}  quiet period: {opts.quiet:g} s")
    print(f"{'change':<24} {'files':>6} {'current after (s)':>18} {'in passes (s)':>14} "
          f"{'embedded':>9} {'passes':>7}")
    for label, files, seconds, embedded, passes, busy in rows:
        print(f"{label:<24} {files:>6} {seconds:>18.2f} {busy:>14.2f} {embedded:>9} {passes:>7}")


if __name__ == "__main__":
    main()
