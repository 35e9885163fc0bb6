"""``chikaku train --distributed`` under torchrun: two processes train on a small library and
the model is registered once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TIMEOUT = 240  # seconds before the run counts as hung


def test_torchrun_with_two_processes_trains_and_registers_one_model(shapes_lib):
    lib, _, _ = shapes_lib
    before = {m.version for m in lib.models()}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "engine.cli", "--library", str(lib.root), "--device", "cpu", "train",
         "--distributed", "--steps", "20", "--batch-size", "16", "--lr", "3e-3", "--json"],
        capture_output=True, text=True, timeout=TIMEOUT,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout[run.stdout.index("{"):])
    added = {m.version for m in lib.models()} - before
    assert added == {result["version"]}  # one version, registered once, by the first process
    assert result["steps"] == 20 and result["photos"] > 0
