"""A query sets NumPy's BLAS to one thread and leaves FAISS's libraries as they were
(engine.blas)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("threadpoolctl")
ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import faiss, numpy, threadpoolctl
from engine.blas import numpy_on_one_thread
def threads():
    return {("numpy" if "numpy" in i["filepath"] else "other"): i["num_threads"]
            for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}
before = threads()
numpy_on_one_thread()
numpy_on_one_thread()
print(before, threads())
"""


def test_numpys_blas_gets_one_thread_and_faiss_keeps_its_own():
    run = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={"OPENBLAS_NUM_THREADS": "2",
                                                      "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    before, after = (ast.literal_eval(part)
                     for part in run.stdout.strip().replace("} {", "}|{").split("|"))
    assert before["numpy"] == 2 and after["numpy"] == 1
    assert after.get("other") == before.get("other")  # FAISS's BLAS keeps its threads
