"""Never lose a caption: photos leave the library only when their folder is present and readable
and the file is really gone; captions outlive a photo's absence.

Each test does what a person does (unplugs a disk, moves a photo between two library folders and
indexes one of them, empties a folder) and checks what they would notice: the caption count, the
photo found again with its captions, its id and vector kept.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import unicodedata
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from engine import captions
from engine.cli import main as cli
from engine.library import Library
from engine.watching.watcher import Watcher
from tests.conftest import TINY_MODEL, dataset_images
from tests.engine.test_watcher import FAST, Recorder, wait_for

A_YEAR = 365 * 24 * 3600


def _caption_some(lib: Library, folder: Path, count: int = 3) -> dict[str, list[str]]:
    """Captions on the first ``count`` photos of a folder: {file name: captions}."""
    given = {}
    for i, p in enumerate(sorted(folder.glob("*.jpg"))[:count]):
        texts = [f"caption {i} of {p.name}", f"another line for {p.name}"]
        lib.set_captions(lib.photo_by_path(p).id, texts)
        given[p.name] = texts
    return given


def _unplug(folder: Path, away: Path) -> None:
    """What an unplugged disk leaves behind: its mount point, empty, and untouched since the disk
    was mounted over it (so its modification time is older than anything indexed from the disk)."""
    away.mkdir()
    for p in folder.iterdir():
        shutil.move(p, away / p.name)
    old = time.time() - A_YEAR
    os.utime(folder, (old, old))


def _plug_back(folder: Path, away: Path) -> None:
    for p in away.iterdir():
        shutil.move(p, folder / p.name)


def _searchable(lib: Library, photo: Path) -> list[str]:
    return [h.path for h in lib.search(image=photo, k=50)]


# -- case 1: an unplugged disk -----------------------------------------------------------------
def test_indexing_while_the_disk_is_unplugged_removes_nothing(tiny_lib, photos, tmp_path):
    tiny_lib.add_folders([photos])
    given = _caption_some(tiny_lib, photos)
    before = tiny_lib.status()
    away = tmp_path / "unplugged"
    _unplug(photos, away)

    for report in (tiny_lib.add_folders([photos]), tiny_lib.reindex()):
        assert report.removed == 0 and report.missing == 0
        assert str(photos) in report.unavailable
        assert "kept" in report.unavailable[str(photos)]
    after = tiny_lib.status()
    assert (after.photos, after.captions) == (before.photos, before.captions) == (12, 6)

    _plug_back(photos, away)
    report = tiny_lib.add_folders([photos])
    assert (report.added, report.removed, report.embedded, report.unchanged) == (0, 0, 0, 12)
    for name, texts in given.items():
        assert tiny_lib.captions(tiny_lib.photo_by_path(photos / name).id) == texts
    name = next(iter(given))
    assert _searchable(tiny_lib, photos / name)[0] == str(photos / name)


def test_an_unplugged_disk_inside_a_library_folder_keeps_its_photos(tiny_lib, photos, tmp_path):
    disk = photos / "disk"
    disk.mkdir()
    for p in sorted(photos.glob("*.jpg"))[:5]:
        shutil.move(p, disk / p.name)
    tiny_lib.add_folders([photos])
    given = _caption_some(tiny_lib, disk, 2)
    _unplug(disk, tmp_path / "unplugged")

    report = tiny_lib.add_folders([photos])
    assert report.removed == 0 and str(disk) in report.unavailable
    assert tiny_lib.status().photos == 12 and tiny_lib.status().captions == 4
    _plug_back(disk, tmp_path / "unplugged")
    assert tiny_lib.add_folders([photos]).unchanged == 12
    for name, texts in given.items():
        assert tiny_lib.captions(tiny_lib.photo_by_path(disk / name).id) == texts


def test_a_watcher_started_while_the_disk_is_unplugged_removes_nothing(tiny_lib, photos,
                                                                       tmp_path):
    tiny_lib.add_folders([photos])
    given = _caption_some(tiny_lib, photos)
    away = tmp_path / "unplugged"
    _unplug(photos, away)

    rec = Recorder()
    with Watcher(tiny_lib, on_event=rec, options=FAST) as w:
        wait_for(lambda: rec.of("unavailable") and w.idle, "the empty mount point to be noticed")
        assert w.mode(photos) == "unavailable"
        assert "photos stay in the library" in rec.of("unavailable")[0].message
        assert "1 unavailable folder left alone" in rec.of("indexed")[0].message
        assert tiny_lib.status().photos == 12 and tiny_lib.status().captions == 6
        assert all(e.result.removed == 0 for e in rec.of("indexed"))

        _plug_back(photos, away)  # the disk is back: caught up, nothing embedded again
        wait_for(lambda: rec.of("resumed") and w.idle and w.mode(photos) != "unavailable",
                 "the disk to be noticed again")
    assert rec.embedded() == 0 and rec.of("error") == []
    for name, texts in given.items():
        assert tiny_lib.captions(tiny_lib.photo_by_path(photos / name).id) == texts
    assert tiny_lib.status().photos == 12


def test_an_unreadable_folder_keeps_its_photos(tiny_lib, photos, monkeypatch):
    sub = photos / "private"
    sub.mkdir()
    for p in sorted(photos.glob("*.jpg"))[:4]:
        shutil.move(p, sub / p.name)
    tiny_lib.add_folders([photos])
    given = _caption_some(tiny_lib, sub, 2)
    real_scandir = os.scandir

    def refusing(path="."):  # as a folder without read permission answers (tests run as root)
        if os.fspath(path) in (str(sub), str(photos)):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    for report in (tiny_lib.add_folders([photos]), tiny_lib.reindex()):
        assert report.removed == report.missing == 0
    assert tiny_lib.status().photos == 12 and tiny_lib.status().captions == 4
    monkeypatch.undo()
    for name, texts in given.items():
        assert tiny_lib.captions(tiny_lib.photo_by_path(sub / name).id) == texts


def test_a_folder_the_person_emptied_lets_its_photos_go_but_keeps_their_captions(
        tiny_lib, photos, tmp_path):
    tiny_lib.add_folders([photos])
    given = _caption_some(tiny_lib, photos)
    keep = tmp_path / "kept"
    keep.mkdir()
    for p in photos.iterdir():  # deleted now: the folder changed after its photos were indexed
        shutil.copy2(p, keep / p.name)
        p.unlink()

    report = tiny_lib.add_folders([photos])
    assert report.removed == 12 and report.unavailable == {}
    assert tiny_lib.status().photos == 0

    name = next(iter(given))
    shutil.copy2(keep / name, photos / "back under another name.jpg")
    report = tiny_lib.add_folders([photos])
    assert report.added == 1
    back = tiny_lib.photo_by_path(photos / "back under another name.jpg")
    assert tiny_lib.captions(back.id) == given[name]


# -- case 2: a photo moved between two library folders, one of them indexed --------------------
@pytest.fixture
def two_folders(tiny_lib, photos, tmp_path):
    """Library folders X (photos 0-5) and Y (6-11), indexed; two captions on X's first photo."""
    x, y = tmp_path / "X", tmp_path / "Y"
    x.mkdir()
    y.mkdir()
    for i, p in enumerate(sorted(photos.glob("*.jpg"))):
        shutil.move(p, (x if i < 6 else y) / p.name)
    tiny_lib.add_folders([x, y])
    first = sorted(x.glob("*.jpg"))[0]
    photo = tiny_lib.photo_by_path(first)
    tiny_lib.set_captions(photo.id, ["the first snow of the year", "our garden in December"])
    vector = tiny_lib.catalog.vector_of(photo.id, tiny_lib.model.version)
    return tiny_lib, x, y, first, photo.id, vector


def test_a_photo_moved_between_folders_survives_indexing_the_folder_it_left(two_folders):
    lib, x, y, first, pid, vector = two_folders
    captions_before = lib.status().captions
    moved = y / first.name
    shutil.move(first, moved)

    report = lib.add_folders([x])
    assert report.removed == 0 and report.missing == 1
    assert lib.status().captions == captions_before == 2
    assert str(first) not in _searchable(lib, moved)  # no longer offered where it was

    report = lib.add_folders([y])
    assert (report.moved, report.added, report.embedded) == (1, 0, 0)
    row = lib.photo_by_path(moved)
    assert row.id == pid
    assert lib.captions(pid) == ["the first snow of the year", "our garden in December"]
    assert np.array_equal(lib.catalog.vector_of(pid, lib.model.version), vector)
    assert _searchable(lib, moved)[0] == str(moved)
    assert lib.status().photos == 12


def test_a_whole_library_pass_finds_the_photo_a_partial_pass_missed(two_folders):
    lib, x, y, first, pid, _vector = two_folders
    shutil.move(first, y / "renamed.jpg")
    assert lib.add_folders([x]).missing == 1
    report = lib.reindex()
    assert (report.moved, report.removed, report.embedded) == (1, 0, 0)
    assert lib.photo_by_path(y / "renamed.jpg").id == pid
    assert len(lib.captions(pid)) == 2


def test_a_photo_moved_back_before_the_other_folder_was_indexed_returns(two_folders):
    lib, x, y, first, pid, _vector = two_folders
    shutil.move(first, y / first.name)
    lib.add_folders([x])
    shutil.move(y / first.name, first)
    report = lib.add_folders([x])
    assert report.added == report.embedded == 0
    assert lib.photo_by_path(first).id == pid and len(lib.captions(pid)) == 2
    assert _searchable(lib, first)[0] == str(first)
    assert lib.status().photos == 12


def test_indexing_the_new_folder_first_hands_the_captions_to_the_photo_there(two_folders):
    lib, x, y, first, pid, _vector = two_folders
    moved = y / first.name
    shutil.move(first, moved)
    lib.add_folders([y])  # Y first: X still lists the photo, so Y's copy is a new photo
    lib.add_folders([x])
    assert lib.status().photos == 12 and lib.status().captions == 2
    assert lib.captions(lib.photo_by_path(moved).id) == ["the first snow of the year",
                                                         "our garden in December"]


def test_a_missing_photo_that_never_returns_leaves_on_the_next_whole_pass(two_folders, tmp_path):
    lib, x, y, first, pid, _vector = two_folders
    elsewhere = tmp_path / "outside the library.jpg"
    shutil.move(first, elsewhere)
    assert lib.add_folders([x]).missing == 1
    assert lib.reindex().removed == 1
    assert lib.photo_by_path(first) is None and lib.status().photos == 11

    shutil.copy2(elsewhere, y / "found in a drawer.jpg")  # the same photo, years later
    assert lib.add_folders([y]).added == 1
    back = lib.photo_by_path(y / "found in a drawer.jpg")
    assert lib.captions(back.id) == ["the first snow of the year", "our garden in December"]


def test_a_deleted_photo_in_the_only_folder_still_leaves(tiny_lib, photos):
    tiny_lib.add_folders([photos])
    victim = sorted(photos.glob("*.jpg"))[2]
    victim.unlink()
    report = tiny_lib.add_folders([photos])
    assert (report.removed, report.missing) == (1, 0)
    assert tiny_lib.status().photos == 11


def test_removing_a_folder_on_purpose_still_takes_its_photos_out(two_folders):
    lib, x, y, first, pid, _vector = two_folders
    assert lib.remove_folder(x) == 6
    assert lib.status().photos == 6 and lib.status().captions == 0
    assert first.is_file()  # the files themselves are never touched


# -- the same two cases through the command line, as the issue reproduced them ---------------
def _cli_library(tmp_path) -> list[str]:
    Library.open(tmp_path / "cli-lib", device="cpu", default_model=TINY_MODEL).close()
    return ["--library", str(tmp_path / "cli-lib")]


def _cli_status(lib: list[str], capsys) -> dict:
    assert cli(["status", "--json", *lib]) == 0
    return json.loads(capsys.readouterr().out)


def test_chikaku_index_says_it_left_an_unplugged_disk_alone(tmp_path, photos, capsys):
    lib = _cli_library(tmp_path)
    assert cli(["index", str(photos), "--quiet", *lib]) == 0
    with closing(Library.open(tmp_path / "cli-lib", device="cpu")) as opened:
        _caption_some(opened, photos, 6)
    capsys.readouterr()
    _unplug(photos, tmp_path / "unplugged")

    assert cli(["index", "--quiet", *lib]) == 0
    out = capsys.readouterr().out
    assert "0 removed" in out and f"left alone: {photos}" in out
    status = _cli_status(lib, capsys)
    assert (status["photos"], status["captions"]) == (12, 12)


def test_chikaku_index_of_one_folder_keeps_the_captions_of_a_photo_moved_out(tmp_path, photos,
                                                                            capsys):
    x, y = tmp_path / "X", tmp_path / "Y"
    x.mkdir()
    y.mkdir()
    for i, p in enumerate(sorted(photos.glob("*.jpg"))):
        shutil.move(p, (x if i < 6 else y) / p.name)
    lib = _cli_library(tmp_path)
    assert cli(["index", str(x), str(y), "--quiet", *lib]) == 0
    with closing(Library.open(tmp_path / "cli-lib", device="cpu")) as opened:
        _caption_some(opened, x, 6)
    moved = sorted(x.glob("*.jpg"))[0]
    shutil.move(moved, y / moved.name)
    capsys.readouterr()

    assert cli(["index", str(x), "--quiet", *lib]) == 0
    out = capsys.readouterr().out
    assert "0 removed" in out and "1 missing" in out
    assert _cli_status(lib, capsys)["captions"] == 12
    assert cli(["index", str(y), "--quiet", *lib]) == 0
    out = capsys.readouterr().out
    assert "0 added" in out and "1 moved" in out
    status = _cli_status(lib, capsys)
    assert (status["photos"], status["captions"]) == (12, 12)


# -- case 11: captions attached to the wrong photo ---------------------------------------------
def _caps(lib: Library, path: Path) -> list[str]:
    return lib.captions(lib.photo_by_path(path).id)


def _write_csv(path: Path, rows: list[tuple[str, str]], bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "image,caption\n" + "".join(f'"{n}","{c}"\n' for n, c in rows)
    path.write_text(body, encoding="utf-8-sig" if bom else "utf-8")
    return path


def test_a_csv_row_naming_another_folder_never_captions_the_photo_of_that_name(
        tiny_lib, photos, tmp_path):
    tiny_lib.add_folders([photos])
    a, b, c, d = sorted(photos.glob("*.jpg"))[:4]
    table = _write_csv(tmp_path / "lists" / "deep" / "captions.csv", [
        (f"/elsewhere/{a.name}", "a photo of another library"),
        (f"../../other/{b.name}", "a photo of another folder"),
        (f"../../photos/{c.name}", "named from the table's own folder"),
        (str(d), "named by its full path"),
        (d.name, "named by its file name alone"),
    ])
    report = captions.import_csv(tiny_lib, table)
    assert _caps(tiny_lib, a) == [] and _caps(tiny_lib, b) == []
    assert _caps(tiny_lib, c) == ["named from the table's own folder"]
    assert _caps(tiny_lib, d) == ["named by its full path", "named by its file name alone"]
    reasons = dict(report.unmatched)
    assert reasons[f"/elsewhere/{a.name}"] == "no photo at this path in the library"
    assert reasons[f"../../other/{b.name}"] == "no photo at this path in the library"


def test_a_coco_file_naming_another_folder_never_captions_the_photo_of_that_name(
        tiny_lib, photos, tmp_path):
    tiny_lib.add_folders([photos])
    a, b = sorted(photos.glob("*.jpg"))[:2]
    coco = {"images": [{"id": 1, "file_name": f"train2014/{a.name}"},
                       {"id": 2, "file_name": f"photos/{b.name}"}],
            "annotations": [{"image_id": 1, "caption": "from someone else's data set"},
                            {"image_id": 2, "caption": "a folder inside the library"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    captions.import_coco(tiny_lib, tmp_path / "coco.json")
    assert _caps(tiny_lib, a) == []
    assert _caps(tiny_lib, b) == ["a folder inside the library"]


def test_coco_captions_that_are_not_text_are_refused_with_the_reason(tiny_lib, photos, tmp_path):
    tiny_lib.add_folders([photos])
    a = sorted(photos.glob("*.jpg"))[0]
    coco = {"images": [{"id": 1, "file_name": a.name}],
            "annotations": [{"image_id": 1, "caption": None},
                            {"image_id": 1, "caption": ["a", "b"]},
                            {"image_id": 1, "caption": {"en": "a dog"}},
                            {"image_id": 1, "caption": 42},
                            {"image_id": 1, "caption": "a dog on the beach"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    report = captions.import_coco(tiny_lib, tmp_path / "coco.json")
    assert _caps(tiny_lib, a) == ["a dog on the beach"]
    assert report.captions_added == 1
    reasons = [why for name, why in report.unmatched if name == a.name]
    assert reasons == ["the caption is null, not text", "the caption is a list, not text",
                       "the caption is an object, not text", "the caption is a number, not text"]


def test_control_characters_never_reach_a_caption(tiny_lib, tmp_path, dataset):
    folder = tmp_path / "meta"
    folder.mkdir()
    src = Image.open(sorted((dataset / "images").iterdir())[0]).convert("RGB")
    exif = Image.Exif()
    exif[0x010E] = "\x1b[31mSunset\x1b[0m over\x07 Lake\x08 Biwa\x1b]0;a window title\x07"
    src.save(folder / "exif.jpg", exif=exif)
    src.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "sidecar.jpg")
    # (a NUL byte would make it a binary file, refused whole: see test_properties_readers)
    (folder / "sidecar.txt").write_text("grandpa's\x01 boat\x1b[2J\x7f\n\x9bMia\n")
    tiny_lib.add_folders([folder])
    captions.import_embedded(tiny_lib)
    captions.import_sidecars(tiny_lib)
    assert _caps(tiny_lib, folder / "exif.jpg") == ["Sunset over Lake Biwa"]
    assert _caps(tiny_lib, folder / "sidecar.jpg") == ["grandpa's boat", "Mia"]


def test_a_file_name_in_either_unicode_form_matches(tiny_lib, photos, tmp_path):
    first, second = sorted(photos.glob("*.jpg"))[:2]
    nfc, nfd = unicodedata.normalize("NFC", "café.jpg"), unicodedata.normalize("NFD", "Zoë.jpg")
    first.rename(photos / nfc)
    second.rename(photos / nfd)
    tiny_lib.add_folders([photos])
    table = _write_csv(tmp_path / "captions.csv", [
        (unicodedata.normalize("NFD", "café.jpg"), "coffee on the terrace"),  # as macOS writes
        (str(photos / unicodedata.normalize("NFC", "Zoë.jpg")), "Zoë at the lake"),
    ])
    report = captions.import_csv(tiny_lib, table)
    assert report.unmatched == []
    assert _caps(tiny_lib, photos / nfc) == ["coffee on the terrace"]
    assert _caps(tiny_lib, photos / nfd) == ["Zoë at the lake"]


def test_chikaku_eval_reads_a_captions_csv_with_a_byte_order_mark(tmp_path, capsys):
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    rows = []
    for p in dataset_images()[:6]:
        shutil.copy2(p, folder / "images" / p.name)
        rows += [(p.name, f"photo {p.stem}"), (p.name, f"another line for {p.stem}")]
    _write_csv(folder / "captions.csv", rows, bom=True)  # as spreadsheet programs save it
    lib = _cli_library(tmp_path)
    assert cli(["eval", str(folder), "--split", "all", "--json", *lib]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["photos"], result["captions"]) == (6, 12)

    library = _cli_library(tmp_path)  # the same file imports too: one reader for both
    with closing(Library.open(library[1], device="cpu")) as opened:
        opened.add_folders([folder / "images"])
        assert captions.import_csv(opened, folder / "captions.csv").captions_added == 12


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_no_control_character_or_escape_survives_into_a_caption(text):
    kept = captions._clean(text)
    assert kept is None or not any(unicodedata.category(ch) == "Cc" for ch in kept)
