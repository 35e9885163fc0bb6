"""What an incremental pass must not do: take a different photo for a moved one, or read a file
it already knows it cannot use (synthetic photos, no shared data set needed)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

import engine.indexer as indexer_mod

pytestmark = pytest.mark.usefixtures("catalog_url")  # each test on SQLite and on PostgreSQL


def _bmp(path, colour, shape) -> None:
    """A 48x48 BMP: every one of them has exactly the same byte size, whatever it shows."""
    im = Image.new("RGB", (48, 48), (20, 20, 30))
    d = ImageDraw.Draw(im)
    (d.ellipse if shape == "disc" else d.rectangle)((8, 8, 40, 40), fill=colour)
    im.save(path, "BMP")


def _folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate([(200, 30, 30), (30, 160, 40), (30, 60, 210), (230, 210, 40)]):
        _bmp(folder / f"{i:02d}.bmp", colour, "disc" if i % 2 else "bar")
    return folder


def test_a_different_photo_of_the_same_size_is_not_taken_for_a_moved_one(tiny_lib, tmp_path):
    folder = _folder(tmp_path)
    tiny_lib.add_folders([folder])
    old = tiny_lib.photo_by_path(folder / "00.bmp")
    tiny_lib.set_captions(old.id, ["grandma's red bar"])
    old_vector = tiny_lib.catalog.vector_of(old.id, tiny_lib.model.version)

    (folder / "00.bmp").unlink()
    _bmp(folder / "new.bmp", (250, 250, 250), "disc")  # another picture, the same byte size
    assert (folder / "new.bmp").stat().st_size == (folder / "01.bmp").stat().st_size
    report = tiny_lib.add_folders([folder])

    assert (report.moved, report.added, report.removed, report.embedded) == (0, 1, 1, 1)
    new = tiny_lib.photo_by_path(folder / "new.bmp")
    assert new.id != old.id
    assert tiny_lib.captions(new.id) == []  # the deleted photo's captions left with it
    assert tiny_lib.photo(old.id) is None
    new_vector = tiny_lib.catalog.vector_of(new.id, tiny_lib.model.version)
    assert not np.array_equal(new_vector, old_vector)
    assert tiny_lib.search(image=folder / "new.bmp", k=1)[0].path == str(folder / "new.bmp")


def test_the_same_photo_under_a_new_name_is_still_a_move(tiny_lib, tmp_path):
    """The other side of the rule above: equal content (not just equal size) is a move."""
    folder = _folder(tmp_path)
    tiny_lib.add_folders([folder])
    old = tiny_lib.photo_by_path(folder / "02.bmp")
    tiny_lib.set_captions(old.id, ["the blue bar"])
    (folder / "02.bmp").rename(folder / "renamed.bmp")
    report = tiny_lib.add_folders([folder])
    assert (report.moved, report.added, report.removed, report.embedded) == (1, 0, 0, 0)
    assert tiny_lib.photo_by_path(folder / "renamed.bmp").id == old.id
    assert tiny_lib.captions(old.id) == ["the blue bar"]


def _count_reads(monkeypatch) -> list[str]:
    """Every file the indexer reads, in order (the indexer reads files only through this)."""
    reads: list[str] = []
    real = indexer_mod.read_file

    def counting(path):
        reads.append(str(path))
        return real(path)

    monkeypatch.setattr(indexer_mod, "read_file", counting)
    return reads


def test_a_file_that_cannot_be_used_is_read_once_not_on_every_pass(tiny_lib, tmp_path,
                                                                       monkeypatch):
    folder = _folder(tmp_path)
    bad = folder / "notes.jpg"
    bad.write_text("shopping list: eggs, rice, miso\n")
    reads = _count_reads(monkeypatch)

    first = tiny_lib.add_folders([folder])
    assert reads.count(str(bad)) == 1
    assert list(first.skipped) == [str(bad)] and "not an image" in first.skipped[str(bad)]

    reads.clear()
    for _ in range(2):
        again = tiny_lib.add_folders([folder])
        assert again.skipped == first.skipped  # still reported, with its reason
        assert again.unchanged == 4
    assert reads == []  # neither the bad file nor the good ones were opened again
    assert [path for path, _ in tiny_lib.status().skipped] == [str(bad)]

    bad.write_text("shopping list: eggs, rice, miso, tofu\n")  # changed: looked at again
    tiny_lib.add_folders([folder])
    assert reads == [str(bad)]
