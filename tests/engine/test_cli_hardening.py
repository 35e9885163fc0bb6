"""The command line given what people really type: options in any order, damaged libraries,
system folders, Ctrl+C, moved libraries, --json read by scripts, names that are not plain text."""

from __future__ import annotations

import json
from contextlib import closing

from engine.cli import main as cli
from tests.conftest import TINY_MODEL


def _code(argv) -> int:
    """The exit status of a command, whether it returns or exits (argparse's usage errors)."""
    try:
        return cli(argv)
    except SystemExit as e:
        return e.code


def _make_lib(root):
    from engine.library import Library

    Library.open(root, device="cpu", default_model=TINY_MODEL).close()
    return str(root)


# -- case 12: --library before or after the command, never empty --------------------------------
def test_library_option_before_the_command(tmp_path, capsys):
    lib = _make_lib(tmp_path / "lib")
    assert cli(["--library", lib, "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["library"] == lib
    assert cli(["--library", lib, "--device", "cpu", "models", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_library_option_between_an_action_and_its_argument(tmp_path, capsys):
    from engine.library import Library

    lib = _make_lib(tmp_path / "lib")
    with closing(Library.open(lib, device="cpu")) as opened:
        spare = opened.add_model({**TINY_MODEL, "seed": 1}, activate=False)
    assert cli(["models", "delete", "--library", lib, spare]) == 0
    assert f"deleted model {spare}" in capsys.readouterr().out
    assert cli(["models", "--json", "--library", lib]) == 0
    assert spare not in {m["version"] for m in json.loads(capsys.readouterr().out)}


def test_empty_library_option_is_refused(tmp_path, monkeypatch, capsys):
    default = tmp_path / "default-library"
    monkeypatch.setenv("CHIKAKU_LIBRARY", str(default))
    assert _code(["status", "--library", ""]) == 2
    assert "--library: the library folder name is empty" in capsys.readouterr().err
    assert _code(["--library", "", "status"]) == 2
    assert "--library: the library folder name is empty" in capsys.readouterr().err
    assert not default.exists()
