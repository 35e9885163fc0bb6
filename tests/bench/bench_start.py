"""App start: time from launching ``chikaku`` to a visible window, and to the first search served.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/bench/bench_start.py [--runs 5]

Indexes 200 flickr8k-1k photos into a fresh library (with the bundled model), then launches the
app as a new process, as a person does, several times. Inside each launch an observer notes when
the main window has been shown and painted, types a query at once (as someone who knows what
they want does), and notes when its results are in the grid. Times run from just before the
process is started, so they include the interpreter, the imports and loading the model.
Prints a table last (median and worst of the runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATASET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "flickr8k-1k"
QUERY = "a dog running through the snow"


def observe(started: float, out: Path) -> None:
    """In the launched process: watch the real app start, type a query, note the times."""
    from PySide6.QtCore import QTimer

    from app import window as window_module

    marks: dict[str, float] = {}
    shown = window_module.MainWindow.show

    def done() -> None:
        out.write_text(json.dumps(marks))
        os._exit(0)  # the measurement is all that was wanted

    def show(self) -> None:
        shown(self)

        def painted() -> None:  # the event loop has run once: the window is on screen
            marks["window"] = time.time() - started
            self.search.field.setText(QUERY)
            self.search.search_now()
            poll()

        def poll() -> None:
            if self.shown is not None and self.results.rowCount() > 0:
                marks["first search"] = time.time() - started
                done()
            elif time.time() - started > 120:
                marks["error"] = "no results within 120 s"
                done()
            else:
                QTimer.singleShot(2, poll)

        QTimer.singleShot(0, painted)

    window_module.MainWindow.show = show
    from app.main import run

    run()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dataset", default=str(DATASET))
    ap.add_argument("--child", nargs=2, metavar=("STARTED", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        observe(float(args.child[0]), Path(args.child[1]))
        return
    from engine.library import Library

    work = Path(tempfile.mkdtemp(prefix="chikaku-bench-start-"))
    photos = work / "photos"
    photos.mkdir()
    for p in sorted((Path(args.dataset) / "images").glob("*.jpg"))[:200]:
        shutil.copy2(p, photos / p.name)
    lib = Library.open(work / "library", device="cpu")
    lib.add_folders([photos])
    lib.close()
    env = {**os.environ, "CHIKAKU_LIBRARY": str(work / "library"),
           "XDG_CONFIG_HOME": str(work / "config"), "XDG_DATA_HOME": str(work / "data"),
           "XDG_CACHE_HOME": str(work / "cache"), "XDG_STATE_HOME": str(work / "state")}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    runs = []
    for i in range(args.runs):
        out = work / f"run{i}.json"
        started = time.time()
        subprocess.run([sys.executable, __file__, "--child", repr(started), str(out)], env=env,
                       check=True, timeout=300)
        marks = json.loads(out.read_text())
        if "error" in marks:
            raise SystemExit(f"run {i}: {marks['error']}")
        runs.append(marks)
        print(f"run {i}: window {marks['window']:.2f} s, first search "
              f"{marks['first search']:.2f} s")
    print()
    print(f"app start over {len(runs)} launches, {os.cpu_count()} cores, "
          f"QT_QPA_PLATFORM={env['QT_QPA_PLATFORM']}")
    print(f"{'':<28} {'median s':>9} {'worst s':>8}")
    for key, label in (("window", "launch -> visible window"),
                       ("first search", "launch -> first results")):
        values = [r[key] for r in runs]
        print(f"{label:<28} {statistics.median(values):9.2f} {max(values):8.2f}")


if __name__ == "__main__":
    main()
