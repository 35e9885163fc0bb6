"""Moves found in one pass among other changes: every move is found and counted whatever the
order of the files, a new photo beside them is still added, and a photo overwritten with the
content of one that was deleted is an update, not a move.

Written against the mutants tests/bench/mutation.py found surviving in the indexer's diff and
move detection (engine/indexer.py)."""

from __future__ import annotations

from PIL import Image

from tests.engine.test_incremental import _bmp, _folder


def test_two_moves_and_new_photos_in_one_pass(tiny_lib, tmp_path):
    folder = _folder(tmp_path)
    tiny_lib.add_folders([folder])
    first, second = (tiny_lib.photo_by_path(folder / n) for n in ("01.bmp", "02.bmp"))
    tiny_lib.set_captions(first.id, ["the green disc"])
    tiny_lib.set_captions(second.id, ["the blue bar"])
    (folder / "01.bmp").rename(folder / "m1.bmp")
    (folder / "02.bmp").rename(folder / "m2.bmp")
    _bmp(folder / "a-new.bmp", (250, 250, 250), "disc")  # before the moves in name order
    Image.new("RGB", (20, 10), (9, 9, 9)).save(folder / "z-new.png")  # after; another size
    report = tiny_lib.add_folders([folder])
    assert (report.moved, report.added, report.removed, report.embedded) == (2, 2, 0, 2)
    assert tiny_lib.photo_by_path(folder / "m1.bmp").id == first.id
    assert tiny_lib.photo_by_path(folder / "m2.bmp").id == second.id
    assert tiny_lib.captions(first.id) == ["the green disc"]
    assert tiny_lib.captions(second.id) == ["the blue bar"]
    assert tiny_lib.search(image=folder / "m2.bmp", k=1)[0].path == str(folder / "m2.bmp")


def test_a_photo_overwritten_with_a_deleted_ones_content_is_an_update(tiny_lib, tmp_path):
    folder = _folder(tmp_path)
    tiny_lib.add_folders([folder])
    kept, gone = (tiny_lib.photo_by_path(folder / n) for n in ("00.bmp", "03.bmp"))
    tiny_lib.set_captions(kept.id, ["the red bar"])
    (folder / "00.bmp").write_bytes((folder / "03.bmp").read_bytes())
    (folder / "03.bmp").unlink()
    report = tiny_lib.add_folders([folder])
    assert (report.moved, report.updated, report.removed) == (0, 1, 1)
    assert tiny_lib.photo_by_path(folder / "00.bmp").id == kept.id
    assert tiny_lib.captions(kept.id) == ["the red bar"]
    assert tiny_lib.photo(gone.id) is None
