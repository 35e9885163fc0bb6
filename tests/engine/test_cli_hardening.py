"""The command line given what people really type: options in any order, damaged libraries,
system folders, Ctrl+C, moved libraries, --json read by scripts, names that are not plain text."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from contextlib import closing

import numpy as np
import pytest
from PIL import Image

from engine.cli import main as cli
from tests.conftest import TINY_MODEL
from tests.events import train_events


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


# -- case 9: system folders are never walked, and a folder can leave the library ----------------
def _status(lib, capsys) -> dict:
    capsys.readouterr()
    assert cli(["status", "--json", "--library", lib]) == 0
    return json.loads(capsys.readouterr().out)


def test_system_folders_are_refused_and_never_recorded(tmp_path, capsys):
    from engine.fsinfo import system_filesystem

    if system_filesystem("/proc/sys") != "proc":
        pytest.skip("no /proc file system here")
    lib = _make_lib(tmp_path / "lib")
    for folder, fstype in (("/proc/sys", "proc"), ("/proc", "proc"), ("/sys", "sysfs"),
                           ("/dev", system_filesystem("/dev"))):
        if fstype is None:
            continue
        assert cli(["index", folder, "--quiet", "--library", lib]) == 1, folder
        err = _one_line_error(capsys)
        assert f"{folder} is a system folder ({fstype} file system" in err, err
    assert _status(lib, capsys)["folders"] == []


def _fake_mounts(monkeypatch, system_folder) -> None:
    """A mount table in which ``system_folder`` holds the proc file system."""
    from engine import fsinfo

    table = ("22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
             f"35 22 0:5 / {system_folder} rw,nosuid,nodev,noexec - proc proc rw\n")
    monkeypatch.setattr(fsinfo, "_read_mount_table", lambda: table)


def test_a_system_file_system_inside_a_folder_is_not_walked(tmp_path, monkeypatch, capsys):
    photos = tmp_path / "photos"
    inside = photos / "kernel"
    inside.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for folder in (photos, inside):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / "a.png")
    (photos / "link").symlink_to(inside)  # reached through a link as well
    _fake_mounts(monkeypatch, inside)
    lib = _make_lib(tmp_path / "lib")
    assert cli(["index", str(photos), "--quiet", "--library", lib]) == 0
    assert "1 photos found: 1 added" in capsys.readouterr().out
    assert cli(["index", str(inside), "--library", lib]) == 1
    assert "is a system folder (proc file system" in _one_line_error(capsys)
    assert _status(lib, capsys)["folders"] == [str(photos)]


def test_a_folder_leaves_the_library_with_folders_remove(tmp_path, photos, capsys):
    from engine.catalog import Root
    from engine.fsinfo import system_filesystem
    from engine.library import Library

    if system_filesystem("/proc/sys") != "proc":
        pytest.skip("no /proc file system here")
    lib = _make_lib(tmp_path / "lib")
    opened = Library.open(lib, device="cpu")
    with opened.catalog.session() as s:  # as an older version left it
        s.add(Root(path="/proc/sys"))
    opened.close()
    assert cli(["index", str(photos), "--quiet", "--library", lib]) == 0
    assert cli(["index", "--quiet", "--library", lib]) == 1  # the old folder is named
    assert "folders remove PATH` takes it out" in _one_line_error(capsys)
    assert cli(["folders", "--library", lib]) == 0
    assert capsys.readouterr().out.splitlines() == ["/proc/sys", str(photos)]

    assert cli(["folders", "remove", "/proc/sys", "--library", lib]) == 0
    assert "removed /proc/sys from the library: 0 photos left it" in capsys.readouterr().out
    assert cli(["index", "--quiet", "--library", lib]) == 0
    assert "12 unchanged" in capsys.readouterr().out
    assert cli(["folders", "pause", str(photos), "--library", lib]) == 0
    assert capsys.readouterr().out == f"paused {photos}\n"
    assert cli(["folders", "--json", "--library", lib]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"path": str(photos), "paused": True, "present": True}]
    assert cli(["folders", "remove", str(photos), "--library", lib]) == 0
    assert "12 photos left it" in capsys.readouterr().out
    status = _status(lib, capsys)
    assert status["folders"] == [] and status["photos"] == 0
    assert photos.is_dir() and len(list(photos.iterdir())) == 12  # the files stay
    assert cli(["folders", "remove", str(photos), "--library", lib]) == 1
    assert "is not a folder of this library" in _one_line_error(capsys)


def test_system_file_systems_are_named_by_the_mount_table():
    from engine.fsinfo import parse_mounts, system_filesystem

    table = ("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
             "23 22 0:5 / /proc rw - proc proc rw\n"
             "24 22 0:6 / /dev rw - devtmpfs udev rw\n"
             "25 24 0:7 / /dev/shm rw - tmpfs tmpfs rw\n"
             "26 22 0:8 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
             "27 22 0:9 / /media/my\\040photos rw - vfat /dev/sdb1 rw\n")
    mounts = parse_mounts(table)
    assert system_filesystem("/proc/1/root", mounts, resolved=True) == "proc"
    assert system_filesystem("/dev", mounts, resolved=True) == "devtmpfs"
    assert system_filesystem("/sys/fs/cgroup/x", mounts, resolved=True) == "cgroup2"
    for ordinary in ("/", "/dev/shm/photos", "/media/my photos", "/procedures", "/home"):
        assert system_filesystem(ordinary, mounts, resolved=True) is None, ordinary


# -- issue 19: --json prints JSON alone on standard output --------------------------------------
def _json_commands(lib, folder, dataset) -> dict[str, list[str]]:
    return {"search": ["search", "a red circle", "-k", "3", "--json"],
            "status": ["status", "--json"],
            "eval": ["eval", str(dataset), "--split", "all", "--json"],
            "train": ["train", "--steps", "4", "--batch-size", "8", "--holdout", "0.25",
                      "--activate", "always", "--json"],
            "models": ["models", "--json"],
            "folders": ["folders", "--json"]}


@pytest.mark.parametrize("stderr", ["file", "closed"])
def test_json_output_is_only_json_whatever_stderr_is(shapes_lib, tmp_path, stderr):
    lib, folder, truth = shapes_lib
    lib.close()
    dataset = tmp_path / "dataset"
    (dataset / "images").mkdir(parents=True)
    rows = ["image,caption"]
    for name, (colour, shape) in truth.items():
        (dataset / "images" / name).write_bytes((folder / name).read_bytes())
        rows.append(f"{name},a {colour} {shape}")
    (dataset / "captions.csv").write_text("\n".join(rows) + "\n")
    log = tmp_path / "stderr.txt"
    for name, args in _json_commands(lib, folder, dataset).items():
        command = [sys.executable, "-m", "engine.cli", *args, "--library", str(lib.root)]
        if stderr == "closed":
            run = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh", *command],
                                 stdout=subprocess.PIPE, text=True, timeout=600)
        else:
            with open(log, "w") as err:
                run = subprocess.run(command, stdout=subprocess.PIPE, stderr=err, text=True,
                                     timeout=600)
        assert run.returncode == 0, (name, run.stdout, log.read_text() if log.exists() else "")
        try:
            out = json.loads(run.stdout)  # nothing but JSON on standard output
        except ValueError:
            pytest.fail(f"{name} --json printed more than JSON: {run.stdout[:300]!r}")
        assert out, name
    assert json.loads(run.stdout)[0]["path"] == str(folder)


# -- names that are not plain text --------------------------------------------------------------
def test_file_names_with_escape_codes_are_printed_escaped(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    evil = folder / "red\x1b[31m\x1b]0;title\x07.png"
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(evil)
    (folder / "broken\x1b[2J.jpg").write_bytes(b"")
    lib = _make_lib(tmp_path / "lib")
    assert cli(["index", str(folder), "--quiet", "--library", lib]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "broken\\x1b[2J.jpg: empty file" in out
    assert cli(["search", "--image", str(evil), "-k", "1", "--library", lib]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert out.rstrip().endswith("red\\x1b[31m\\x1b]0;title\\x07.png")
    assert cli(["status", "--library", lib]) == 0
    assert "\x1b" not in capsys.readouterr().out
    assert cli(["search", "--json", "--image", str(evil), "--library", lib]) == 0
    assert json.loads(capsys.readouterr().out)[0]["path"] == str(evil)  # JSON keeps the name


def test_an_argument_that_is_not_utf8_gets_a_message(tmp_path, capsys):
    lib = _make_lib(tmp_path / "lib")
    image = tmp_path / "q\udcff.jpg"  # the byte 0xff, as Python passes it in sys.argv
    for argv in (["search", "--image", str(image)], ["search", "dog \udcff"],
                 ["search", "dog", "--folder", str(tmp_path / "\udcfe")],
                 ["index", str(tmp_path / "\udcff")]):
        assert _code([*argv, "--library", lib]) == 2, argv
        err = _one_line_error(capsys)
        assert "is not valid UTF-8 text" in err and ("\\xff" in err or "\\xfe" in err), err


# -- case 7: Ctrl+C while training re-embeds the library ----------------------------------------
def _slow_photos(folder, count: int) -> None:
    """Large flat photos (small files, each a few dozen milliseconds to decode), all different."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(count):
        im = Image.new("RGB", (2400, 2400), tuple(int(v) for v in rng.integers(0, 255, 3)))
        im.paste(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), (i, i))
        im.save(folder / f"big{i:03d}.png", compress_level=1)


def _read_until(stream, marker: bytes) -> bytes:
    seen = b""
    while marker not in seen:
        chunk = stream.read1(4096)
        if not chunk:
            break
        seen += chunk
    return seen


def test_ctrl_c_while_training_re_embeds_ends_cleanly(shapes_lib, tmp_path):
    lib, _folder, _truth = shapes_lib
    big = tmp_path / "big"
    _slow_photos(big, 48)
    lib.add_folders([big])
    active = lib.active_model_record().version
    lib.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "train", "--steps", "4", "--batch-size", "8",
         "--holdout", "0.25", "--activate", "always", "--library", str(lib.root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = _read_until(proc.stderr, b"re-embedding photos")
    assert b"re-embedding photos" in seen, seen.decode(errors="replace")
    proc.send_signal(signal.SIGINT)
    _out, rest = proc.communicate(timeout=600)
    err = (seen + rest).decode(errors="replace")
    assert proc.returncode == 130, err
    assert "terminate called" not in err and "Traceback" not in err, err
    assert "the photos embedded with it so far are kept" in err, err

    from engine.library import Library

    with closing(Library.open(lib.root, device="cpu")) as again:
        assert again.active_model_record().version == active  # the switch did not happen
        new = next(m.version for m in again.models() if not m.active)
        assert f"the new model {new} is saved" in err
    assert cli(["models", "activate", new, "--library", str(lib.root)]) == 0
    with closing(Library.open(lib.root, device="cpu")) as again:
        status = again.status()
        assert status.model_version == new and status.embedded == status.photos == 96


# -- case 5: a library moved, copied or named relatively keeps its own models -------------------
def _trained(lib) -> str:
    from engine.config import TrainOptions

    events = train_events(lib, TrainOptions(steps=4, batch_size=8, holdout=0.25,
                                         activate="always"))
    assert events[-1].result.activated
    return events[-1].result.version


def _searches(root, capsys, version: str) -> None:
    capsys.readouterr()
    assert cli(["search", "a red circle", "-k", "3", "--json", "--library", str(root)]) == 0, \
        capsys.readouterr().err
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert cli(["status", "--json", "--library", str(root)]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == version


def test_a_moved_or_copied_library_uses_its_own_model(shapes_lib, tmp_path, capsys):
    lib, _folder, _truth = shapes_lib
    version = _trained(lib)
    lib.close()
    moved = tmp_path / "moved"
    shutil.move(lib.root, moved)  # mv
    _searches(moved, capsys, version)
    copy = tmp_path / "copy"
    shutil.copytree(moved, copy, symlinks=True)  # cp -a
    shutil.rmtree(moved)  # the copy is independent of the original
    _searches(copy, capsys, version)


def test_checkpoint_rows_of_older_versions_are_read_in_a_copy(shapes_lib, tmp_path, capsys):
    from sqlalchemy import update

    from engine.catalog import ModelRecord

    lib, _folder, _truth = shapes_lib
    version = _trained(lib)
    with lib.catalog.session() as s:  # as older versions wrote it: the absolute folder
        s.execute(update(ModelRecord).where(ModelRecord.version == version)
                  .values(path=str(lib.root / "models" / version)))
    lib.close()
    copy = tmp_path / "copy"
    shutil.copytree(lib.root, copy, symlinks=True)
    (lib.root / "models" / version / "weights.safetensors").unlink()  # the original's is gone
    _searches(copy, capsys, version)


def test_a_relative_library_option_works_from_another_folder(shapes_lib, tmp_path, monkeypatch,
                                                             capsys):
    lib, _folder, _truth = shapes_lib
    lib.close()
    monkeypatch.chdir(tmp_path)
    assert lib.root == tmp_path / "lib"
    assert cli(["train", "--steps", "4", "--batch-size", "8", "--holdout", "0.25",
                "--activate", "always", "--json", "--library", "lib"]) == 0
    version = json.loads(capsys.readouterr().out)["version"]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    _searches("../lib", capsys, version)
    assert cli(["status", "--json", "--library", "../lib"]) == 0
    assert json.loads(capsys.readouterr().out)["library"] == str(tmp_path / "lib")
