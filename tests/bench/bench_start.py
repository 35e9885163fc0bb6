"""App start: time from launching ``chikaku`` to a visible window, and to the first search served.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/bench/bench_start.py [--runs 5]

Indexes ``--photos`` flickr8k-1k photos (default all 1,000) into a fresh library (with the bundled
model), then launches the app as a new process, as a person does, several times (the first
launch is cold: the zero-shot prompts' embeddings are computed; the later ones read them back). Inside each launch an observer notes when
the main window has been shown and painted, types a query at once (as someone who knows what
they want does), and notes when its results are in the grid. Times run from just before the
process is started, so they include the interpreter, the imports and loading the model.
A text query is answered by the bundled model's text side in NumPy (engine.models.quicktext),
so neither PyTorch nor the whole model is on that path; the whole model loads after the first
results are shown. What that later load costs is also timed alone, each in fresh processes:
importing PyTorch, timm, transformers and sentence-transformers, and loading the bundled model
with the zero-shot prompts' embeddings computed (an empty cache folder) or read back from the
cache folder.
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


IMPORTS = "import torch, timm, transformers, sentence_transformers"
LOAD_MODEL = "from engine.models import create_model; create_model({'family': 'bundled'}, device='cpu')"


def time_in_fresh_process(code: str, env: dict[str, str], setup: str = "") -> float:
    """Seconds that ``code`` takes in a new interpreter, after ``setup`` (untimed)."""
    timer = (f"import time\n{setup}\nt = time.perf_counter()\n{code}\n"
             "print(time.perf_counter() - t)\n")
    run = subprocess.run([sys.executable, "-c", timer], env=env, capture_output=True, text=True,
                         check=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    return float(run.stdout.strip().splitlines()[-1])


def parts(work: Path, env: dict[str, str], runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"imports": [], "computed": [], "cached": []}
    for i in range(runs):
        out["imports"].append(time_in_fresh_process(IMPORTS, env))
        empty = {**env, "XDG_CACHE_HOME": str(work / f"empty-cache-{i}")}
        out["computed"].append(time_in_fresh_process(LOAD_MODEL, empty, IMPORTS))
        out["cached"].append(time_in_fresh_process(LOAD_MODEL, empty, IMPORTS))  # filled now
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dataset", default=str(DATASET))
    ap.add_argument("--photos", type=int, default=1000)
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
    for p in sorted((Path(args.dataset) / "images").glob("*.jpg"))[:args.photos]:
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
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"app start over {len(runs)} launches, {args.photos:,} photos, {os.cpu_count()} "
          f"cores, load average {load}, QT_QPA_PLATFORM={env['QT_QPA_PLATFORM']}")
    print(f"{'':<40} {'median s':>9} {'worst s':>8}")
    for key, label in (("window", "launch -> visible window"),
                       ("first search", "launch -> first results")):
        values = [r[key] for r in runs]
        print(f"{label:<40} {statistics.median(values):9.2f} {max(values):8.2f}")
    warm = [r["first search"] for r in runs[1:]] or [runs[0]["first search"]]
    print(f"{'launch -> first results, cold (1st run)':<40} {runs[0]['first search']:9.2f}")
    print(f"{'launch -> first results, warm (the rest)':<40} {statistics.median(warm):9.2f} "
          f"{max(warm):8.2f}")
    alone = parts(work, env, min(args.runs, 3))
    title = f"the whole model, loaded after ({len(alone['imports'])} runs)"
    print(f"{title:<58} {'median s':>9} {'worst s':>8}")
    for key, label in (("imports", "import torch, timm, transformers and sentence-transformers"),
                       ("computed", "load the model, prompts computed"),
                       ("cached", "load the model, prompts read from the cache")):
        values = alone[key]
        print(f"{label:<58} {statistics.median(values):9.2f} {max(values):8.2f}")
    saved = statistics.median(alone["computed"]) - statistics.median(alone["cached"])
    print(f"{'saved by the prompt cache on each later start (median)':<58} {saved:9.2f}")


if __name__ == "__main__":
    main()
