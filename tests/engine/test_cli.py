"""The command line as a person uses it: index, search, status, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

from engine.cli import main as cli
from tests.conftest import TINY_MODEL


def _lib(tmp_path):
    """A library whose default model is the tiny one (created before the CLI opens it)."""
    from engine.library import Library

    Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL).close()
    return ["--library", str(tmp_path / "lib")]


def test_index_search_status(tmp_path, photos, capsys):
    lib = _lib(tmp_path)
    assert cli(["index", str(photos), "--quiet", *lib]) == 0
    out = capsys.readouterr().out
    assert "12 photos found: 12 added" in out and "12 embedded" in out
    assert cli(["index", "--quiet", *lib]) == 0  # no paths: the library's folders again
    assert "0 embedded" in capsys.readouterr().out

    query = sorted(photos.iterdir())[2]
    assert cli(["search", "--image", str(query), "-k", "3", "--json", *lib]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["path"] == str(query) and len(hits) == 3 and hits[0]["rank"] == 1

    (photos / "broken.jpg").write_bytes(b"")
    assert cli(["index", str(photos), "--quiet", *lib]) == 0
    assert "broken.jpg: empty file" in capsys.readouterr().out
    assert cli(["status", "--json", *lib]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["photos"] == 12 and status["folders"] == [str(photos)]
    assert status["skipped"] == [{"path": str(photos / "broken.jpg"),
                                  "reason": "empty file (0 bytes)"}]


def test_clear_errors_for_bad_arguments(tmp_path, capsys):
    lib = _lib(tmp_path)
    assert cli(["search", "a dog", *lib]) == 1
    assert "library is empty" in capsys.readouterr().err
    assert cli(["index", str(tmp_path / "missing"), *lib]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert cli(["search", *lib]) == 1
    assert "give a query" in capsys.readouterr().err
    assert cli(["eval", str(tmp_path), *lib]) == 1
    assert "no captions.csv" in capsys.readouterr().err


def test_the_chikaku_command_answers_without_a_display(tmp_path):
    run = subprocess.run([sys.executable, "-m", "app.launcher", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith("chikaku ")
    run = subprocess.run([sys.executable, "-m", "app.launcher", "search", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "--image" in run.stdout
