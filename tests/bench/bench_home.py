"""The app over a large library, and over a watched folder: what a person feels.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/bench/bench_home.py [--photos 50000]

(a) The library view with no query over ``--photos`` photos (hard links to 200 flickr8k-1k
    photos, so every cell is a real JPEG with its own path and thumbnail): how long the view
    takes to fill, then the frame time while scrolling through it a quarter page at a time (each
    frame: the scroll, a synchronous repaint of the grid, and the events that arrive meanwhile,
    thumbnails included), and the process's peak memory. The catalog rows are written directly
    (no model is needed to browse); the window does not watch, so nothing rescans them.
(b) A photo copied into a watched folder of a 20-photo library (the bundled model): seconds until
    it is in the window's library view, five times.
Prints a table last.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.conftest import dataset_images  # noqa: E402

TINY = {"family": "scratch", "dim": 32, "width": 16, "input_size": 32, "seed": 0}


def wait(app, condition, timeout: float = 600.0) -> float:
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the app did not get there in time")
        app.processEvents()
        time.sleep(0.002)
    return time.perf_counter() - start


def big_folder(root: Path, n: int) -> list[Path]:
    sources = dataset_images()[:200]
    paths = []
    for i in range(n):
        sub = root / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        p = sub / f"img_{i:06d}.jpg"
        os.link(sources[i % len(sources)], p)
        paths.append(p)
    return paths


def fill(db: Path, folder: Path, paths: list[Path]) -> None:
    con = sqlite3.connect(db)
    con.execute("INSERT INTO roots (path, added_at, enabled, paused) VALUES (?, ?, 1, 0)",
                (str(folder), "2024-01-01 00:00:00"))
    start = datetime(2015, 1, 1)
    rows = ((i + 1, str(p), 1000, 0, "ok", "2024-01-01 00:00:00", "2024-01-01 00:00:00",
             (start + timedelta(hours=3 * i)).isoformat(sep=" "), 500, 375)
            for i, p in enumerate(paths))
    con.executemany("INSERT INTO photos (id, path, size, mtime_ns, status, added_at, "
                    "updated_at, date, width, height) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    con.commit()
    con.close()


def browse(app, n: int, work: Path) -> dict:
    from app.settings import Settings
    from app.window import MainWindow
    from engine.library import Library

    folder = work / "big"
    paths = big_folder(folder, n)
    lib = Library.open(work / "big-library", device="cpu", default_model=TINY)
    fill(work / "big-library" / "catalog.db", folder, paths)
    t = time.perf_counter()
    window = MainWindow(library=lib, settings=Settings(watch=False))
    window.resize(1200, 780)
    window.show()
    wait(app, lambda: window.results.browsing and window.results.rowCount() == n)
    filled = time.perf_counter() - t
    grid, bar = window.grid, window.grid.verticalScrollBar()
    wait(app, lambda: not window.loader._pending, 120)
    frames = []
    step = max(1, bar.pageStep() // 4)
    value = 0
    while value < bar.maximum() and len(frames) < 3000:
        value = min(bar.maximum(), value + step)
        t = time.perf_counter()
        bar.setValue(value)
        grid.viewport().repaint()
        app.processEvents()
        frames.append(time.perf_counter() - t)
    window.close()
    lib.close()
    return {"filled": filled, "frames": frames,
            "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def copy_in(app, work: Path, times: int = 5) -> list[float]:
    from app.window import MainWindow
    from engine.library import Library
    from engine.watching.watcher import WatchOptions

    folder = work / "watched"
    folder.mkdir()
    images = dataset_images()
    for p in images[:20]:
        shutil.copy2(p, folder / p.name)
    lib = Library.open(work / "watched-library", device="cpu")
    lib.add_folders([folder])
    window = MainWindow(library=lib, watch_options=WatchOptions(quiet=0.5, settle=0.2))
    window.show()
    wait(app, lambda: window.results.browsing and window.results.rowCount() == 20)
    wait(app, lambda: window.statusbar.activity("warm") is None)
    time.sleep(2)  # the catch-up pass is over
    seconds = []
    for i in range(times):
        name = f"copied-{i}.jpg"
        t = time.perf_counter()
        shutil.copy2(images[100 + i], folder / name)
        wait(app, lambda name=name: any(
            window.results.hit(r).path.endswith(name) for r in range(window.results.rowCount())),
            120)
        seconds.append(time.perf_counter() - t)
    window.close()
    lib.close()
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=50_000)
    args = ap.parse_args()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    work = Path(tempfile.mkdtemp(prefix="chikaku-bench-home-"))
    os.environ["CHIKAKU_CONFIG_DIR"] = str(work / "config")
    try:
        big = browse(app, args.photos, work)
        copied = copy_in(app, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    frames = np.array(big["frames"]) * 1000
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print()
    print(f"cores: {os.cpu_count()}, load average {load}, QT_QPA_PLATFORM="
          f"{os.environ['QT_QPA_PLATFORM']}")
    print(f"{'measure':<58} {'value':>10}")
    print(f"{f'library view filled, {args.photos:,} photos (s)':<58} {big['filled']:>10.2f}")
    print(f"{'scrolling: frames (a quarter page each)':<58} {len(frames):>10}")
    print(f"{'scrolling: frame time p50 (ms)':<58} {np.percentile(frames, 50):>10.1f}")
    print(f"{'scrolling: frame time p95 (ms)':<58} {np.percentile(frames, 95):>10.1f}")
    print(f"{'scrolling: worst frame (ms)':<58} {frames.max():>10.1f}")
    print(f"{'peak memory of the process (MB)':<58} {big['rss']:>10.0f}")
    print(f"{'photo copied in -> in the library view, median (s)':<58} "
          f"{statistics.median(copied):>10.2f}")
    print(f"{'photo copied in -> in the library view, worst (s)':<58} {max(copied):>10.2f}")


if __name__ == "__main__":
    main()
