"""The command line given what people really type: options in any order, damaged libraries,
system folders, Ctrl+C, moved libraries, --json read by scripts, names that are not plain text."""

from __future__ import annotations

import json
from contextlib import closing

import numpy as np

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


# -- case 10: a message, not a traceback --------------------------------------------------------
def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_damaged_catalog_is_a_message(tmp_path, photos, capsys):
    from engine.library import Library

    root = tmp_path / "lib"
    lib = Library.open(root, device="cpu", default_model=TINY_MODEL)
    lib.add_folders([photos])
    lib.close()
    whole = (root / "catalog.db").read_bytes()
    damages = {"truncated": whole[: len(whole) // 2],
               "random": np.random.default_rng(0).bytes(len(whole))}
    for damage, content in damages.items():
        (root / "catalog.db").write_bytes(content)
        for command in (["status"], ["search", "a dog"], ["index", str(photos)]):
            assert cli([*command, "--library", str(root)]) == 1, (damage, command)
            err = _one_line_error(capsys)
            assert "the file is damaged: restore it from a backup" in err, (damage, err)
        assert (root / "catalog.db").read_bytes() == content  # left as it was, for a rescue


def test_bad_database_url_is_a_message(tmp_path, monkeypatch, capsys):
    lib = str(tmp_path / "lib")
    for url, expected in (("nosuchdb://x", "cannot be used"), ("not a url", "cannot be used"),
                          ("postgresql://me:secret@db.example:notaport/photos", "cannot be used"),
                          ("postgresql+nosuchdriver://me:secret@localhost/photos",
                           "cannot be used"),
                          ("mysql+mysqldb://me:secret@localhost/photos", "is not installed")):
        monkeypatch.setenv("CHIKAKU_DATABASE_URL", url)
        assert cli(["status", "--library", lib]) == 1, url
        err = _one_line_error(capsys)
        assert expected in err and "CHIKAKU_DATABASE_URL" in err, err
        assert "secret" not in err, err  # a password never reaches the screen


def test_negative_seed_is_refused_before_training(shapes_lib, capsys):
    lib, _folder, _truth = shapes_lib
    lib.close()
    assert _code(["train", "--seed", "-1", "--steps", "5", "--library", str(lib.root)]) == 2
    assert "--seed: a seed is a whole number from 0" in capsys.readouterr().err
    assert len(lib.models()) == 1


def test_emptied_catalog_beside_trained_models_is_not_a_new_library(tmp_path, capsys):
    from engine.library import Library
    from engine.models import create_model, save_checkpoint

    root = tmp_path / "lib"
    Library.open(root, device="cpu", default_model=TINY_MODEL).close()
    save_checkpoint(create_model({**TINY_MODEL, "seed": 3}, device="cpu"),
                    root / "models" / "scratch-trained")
    (root / "catalog.db").write_bytes(b"")
    assert cli(["status", "--library", str(root)]) == 1
    err = _one_line_error(capsys)
    assert "is empty (0 bytes), but this library holds 1 trained model(s)" in err
    assert "Restore catalog.db from a backup" in err
    assert (root / "catalog.db").stat().st_size == 0  # nothing written over it

    fresh = tmp_path / "fresh"  # no trained models: a creation cut short, finished now
    fresh.mkdir()
    (fresh / "catalog.db").write_bytes(b"")
    assert cli(["status", "--library", str(fresh)]) == 0
    assert "photos:   0 searchable" in capsys.readouterr().out
