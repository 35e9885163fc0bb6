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


def test_index_memory_budget_is_kept_and_a_bad_one_says_so(tmp_path, photos, capsys):
    lib = _lib(tmp_path)
    assert cli(["index", str(photos), "--quiet", "--memory", "2G", *lib]) == 0
    assert "index memory budget: 2G (the index is flat)" in capsys.readouterr().out
    assert cli(["index", "--quiet", "--memory", "lots", *lib]) != 0
    assert "not a memory size: 'lots'" in capsys.readouterr().err
    from engine.library import Library

    opened = Library.open(tmp_path / "lib", device="cpu")
    try:
        assert opened.store.memory() == 2 << 30  # the bad one changed nothing
    finally:
        opened.close()
    assert cli(["index", "--quiet", "--memory", "none", *lib]) == 0
    assert "index memory budget: none" in capsys.readouterr().out


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


def test_every_training_flag_reaches_the_training_options(tmp_path, monkeypatch):
    """The train command's flags are derived from TrainOptions: each one given on the command
    line arrives in the options training runs with, and the others keep their defaults."""
    import dataclasses

    from engine.config import TrainOptions
    from engine.library import Library

    seen = []

    def fake_train(self, options=None, progress=None, cancel=None):
        seen.append(options)
        raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(Library, "train", fake_train)
    code = cli(["train", *_lib(tmp_path), "--steps", "7", "--batch-size",
                "9", "--lr", "0.01", "--seed", "3", "--holdout", "0.3", "--activate", "never",
                "--family", "scratch", "--ema", "0.5", "--crops", "2", "--unlock-image", "1",
                "--unlock-text", "2", "--wise-alpha", "0.25", "--restart"])
    assert code == 130 and len(seen) == 1
    got, default = dataclasses.asdict(seen[0]), dataclasses.asdict(TrainOptions())
    given = dict(steps=7, batch_size=9, lr=0.01, seed=3, holdout=0.3, activate="never",
                 family="scratch", ema=0.5, crops=2, unlock_image=1, unlock_text=2,
                 wise_alpha=0.25, resume=False)
    assert got == {**default, **given}
