"""Without the shared data set the test run fails with a clear message, unless the person opts
out on purpose, and then it says how many tests did not run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEEDS_DATA = "tests/engine/test_library.py::test_second_run_reembeds_nothing[sqlite]"
NEEDS_NOTHING = "tests/engine/test_query_words.py::test_a_plus_inside_a_word_is_kept_too"


def _pytest(tmp_path, allow: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CHIKAKU_ALLOW_MISSING_DATA"}
    env["CHIKAKU_TEST_DATASET"] = str(tmp_path / "nowhere" / "flickr8k-1k")
    if allow is not None:
        env["CHIKAKU_ALLOW_MISSING_DATA"] = allow
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           NEEDS_DATA, NEEDS_NOTHING], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_run_without_the_data_set_fails_and_says_why(tmp_path):
    run = _pytest(tmp_path, allow=None)
    assert run.returncode == 1, run.stdout
    assert "1 passed, 1 skipped" in run.stdout
    assert "1 tests could not run because the shared data set is not at" in run.stdout
    assert "CHIKAKU_ALLOW_MISSING_DATA=1" in run.stdout


def test_opting_out_passes_and_counts_what_was_skipped(tmp_path):
    run = _pytest(tmp_path, allow="1")
    assert run.returncode == 0, run.stdout
    assert "1 tests skipped because the shared data set is not at" in run.stdout
