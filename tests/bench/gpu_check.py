"""Every GPU test and every benchmark in one go, on a machine with a CUDA GPU.

    .venv/bin/python tests/bench/gpu_check.py [--plan] [--only tests,query,...]

Runs the GPU tests (``pytest -m gpu``), then each benchmark with the model on CUDA: query (FAISS
on the GPU), index, train, activation (small seed counts), watch and app start. Each step's own
output is printed as it finishes, then one table of every step and its key figures.

Exit status: 0 when every step passed; 1 when any GPU test failed or was skipped, any benchmark
failed or timed out, faiss cannot use the GPU (faiss-cpu is installed: see README "GPU"), or the
query benchmark's index did not search on the GPU; 2 when there is no CUDA GPU (nothing was
checked). ``--plan`` prints the steps without running anything, on any machine.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = "tests/bench"


@dataclass
class Step:
    name: str
    args: list[str]
    timeout: int
    figures: list[tuple[str, str]] = field(default_factory=list)  # (label, regex: group 1)
    env: dict[str, str] = field(default_factory=dict)


def steps() -> list[Step]:
    def bench(name: str, *args: str) -> list[str]:
        return [f"{BENCH}/bench_{name}.py", *args]

    index_rows = ("(a) decode+resize", "(b) encoder alone", "(c) chikaku index", "(d) naive",
                  "(e) naive, reduced", "(c) / bound", "peak RSS")
    return [
        Step("tests", ["-m", "pytest", "-m", "gpu", "tests", "-q", "-p", "no:cacheprovider"], 900,
             [("result", r"^(\d+ (?:passed|failed).*)$")],
             env={"QT_QPA_PLATFORM": "offscreen"}),
        Step("query", bench("query", "--device", "cuda"), 1500,
             [(f"k-NN at {n}", rf"^\s*{n}\s+(\d.*)$") for n in (10000, 100000, 300000)] +
             [(f"index at {n}", rf"^\s*{n}\s+(\S+/\S+)") for n in (10000, 100000, 300000)]),
        Step("index", bench("index", "--device", "cuda"), 1200,
             [(label, re.escape(label) + r".*?\s([\d.]+)\s*$") for label in index_rows]),
        Step("train", bench("train", "--device", "cuda", "--seeds", "0", "--only",
                            "default,both"), 1500,
             [("default recipe", r"^default \(.*?\)\s+(.*)$"),
              ("last blocks unlocked", r"^  \+ last text layer and image block\s+(.*)$")]),
        Step("activation", bench("activation", "--device", "cuda", "--caption-seeds", "2",
                                 "--train-seeds", "1"), 1500,
             [("real captions", r"^real \(3 of 5 each\)\s+(.*)$"),
              ("random letters", r"^random letters\s+(.*)$")]),
        Step("watch", bench("watch", "--device", "cuda", "--files", "500"), 900,
             [("import", r"^(import of \d+ photos.*)$")]),
        Step("start", bench("start", "--runs", "3"), 900,
             [("visible window", r"^launch -> visible window\s+(.*)$"),
              ("first results", r"^launch -> first results\s+(.*)$")],
             env={"QT_QPA_PLATFORM": "offscreen"}),
    ]


def run(step: Step) -> tuple[int, str, float]:
    t = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, *step.args], cwd=ROOT, capture_output=True,
                           text=True, timeout=step.timeout, env={**os.environ, **step.env})
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        partial = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        out, rc = (partial or "") + f"\ntimed out after {step.timeout} s", 124
    return rc, out, time.perf_counter() - t


def grab(pattern: str, text: str) -> str:
    m = re.search(pattern, text, re.M)
    return m.group(1).strip() if m else "?"


def problems(step: Step, rc: int, out: str) -> list[str]:
    """Why this step failed (empty when it passed)."""
    found = [f"exit status {rc}"] if rc != 0 else []
    if step.name == "tests" and re.search(r"\d+ skipped", out):
        found.append("a GPU test was skipped on a machine with a GPU")
    if step.name == "query":
        kinds = re.findall(r"^\s*\d+\s+(\w+)/(cpu|gpu)\s", out, re.M)
        if not kinds or any(where != "gpu" for _, where in kinds):
            found.append("the engine's index did not search on the GPU")
    return found


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plan", action="store_true", help="print the steps, run nothing")
    ap.add_argument("--only", default=None, help="comma-separated step names")
    args = ap.parse_args()
    todo = steps()
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {s.name for s in todo}
        if unknown:
            ap.error(f"unknown steps: {', '.join(sorted(unknown))}")
        todo = [s for s in todo if s.name in wanted]
    if args.plan:
        for s in todo:
            env = " ".join(f"{k}={v}" for k, v in s.env.items())
            print(f"{s.name:<11} {env + ' ' if env else ''}python {' '.join(s.args)}  "
                  f"(limit {s.timeout} s)")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing was checked (run this on a machine with one)")
        return 2
    from engine.index import gpu_available

    rows = [("GPU", torch.cuda.get_device_name(0), "")]
    failed = not gpu_available()
    rows.append(("faiss on the GPU", str(not failed),
                 "FAILED: install faiss-gpu (README, GPU)" if failed else ""))
    for step in todo:
        rc, out, seconds = run(step)
        print(f"==== {step.name}: {' '.join(step.args)} ({seconds:.0f} s, exit {rc})")
        print(out, flush=True)
        why = problems(step, rc, out)
        failed = failed or bool(why)
        rows.append((step.name, f"{seconds:.0f} s", "FAILED: " + "; ".join(why) if why else "ok"))
        rows.extend((f"  {label}", grab(pattern, out), "") for label, pattern in step.figures)
    width = max(len(r[0]) for r in rows)
    print()
    print("\n".join(f"{k:<{width}}  {v}  {note}".rstrip() for k, v, note in rows))
    print("GPU check: FAILED" if failed else "GPU check: every step passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
