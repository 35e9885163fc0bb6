"""Every GPU check and benchmark in one go, for a machine with a CUDA GPU.

    .venv/bin/python tests/bench/gpu_check.py

Runs the GPU tests (pytest -m gpu), then the indexing, query and fine-tuning benchmarks on CUDA,
and prints a table of the figures last. Without a CUDA GPU it says so and exits cleanly (0).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], timeout: int) -> tuple[int, str, float]:
    t = time.perf_counter()
    try:
        p = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else str(e.stdout), 124
    return rc, out, time.perf_counter() - t


def grab(pattern: str, text: str) -> str:
    m = re.search(pattern, text, re.M)
    return m.group(1).strip() if m else "?"


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to check (run this on a machine with one)")
        return 0
    from engine.index import gpu_available

    py = sys.executable
    rows = [("GPU", torch.cuda.get_device_name(0)), ("faiss on the GPU", str(gpu_available()))]
    rc, out, _ = run([py, "-m", "pytest", "-m", "gpu", "tests/engine/test_gpu.py", "-q"], 600)
    rows.append(("GPU tests", out.strip().splitlines()[-1] if out.strip() else f"rc {rc}"))
    rc, out, _ = run([py, "tests/bench/bench_index.py", "--device", "cuda"], 1200)
    print(out)
    for label in ("(a) decode+resize", "(b) encoder alone", "(c) chikaku index",
                  "(d) naive", "(c) / bound", "peak RSS"):
        rows.append((f"index {label}", grab(re.escape(label) + r".*?\s([\d.]+)\s*$", out)))
    rc, out, _ = run([py, "tests/bench/bench_query.py"], 1500)
    print(out)
    for size in ("10000", "100000", "1000000"):
        rows.append((f"query at {size}", grab(rf"^\s*{size}\s+(.*)$", out)))
    rc, out, _ = run([py, "tests/bench/bench_train.py", "--device", "cuda", "--seeds", "0",
                      "--only", "default,both"], 1200)
    print(out)
    rows.append(("fine-tune (default recipe)", grab(r"^default \(.*?\s{2,}(.*)$", out)))
    rows.append(("fine-tune (last blocks unlocked)", grab(r"^  \+ last text layer and image.*?\s{2,}(.*)$",
                                                         out)))
    width = max(len(r[0]) for r in rows)
    print("\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
