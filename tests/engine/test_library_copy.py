"""A library copied with ``cp -a`` becomes a library of its own: the copy is told apart from its
original by the folder it is opened from, so index files of the original copied over the copy's
are rebuilt from the copy's catalog, never trusted. A moved library keeps working."""

from __future__ import annotations

import shutil
import subprocess

from tests.engine.test_index_trust import _finds_itself, _open, _photos


def test_a_copied_library_never_trusts_its_original_s_index_files(tmp_path):
    original = _open(tmp_path / "original")
    original.add_folders([_photos(tmp_path / "a", 4, seed=1)[0].parent])
    original.close()
    subprocess.run(["cp", "-a", str(tmp_path / "original"), str(tmp_path / "copy")], check=True)
    original, copy = _open(tmp_path / "original"), _open(tmp_path / "copy")
    original_photos = _photos(tmp_path / "b", 6, seed=2)
    original.add_folders([tmp_path / "b"])
    copy_photos = _photos(tmp_path / "c", 6, seed=3)
    copy.add_folders([tmp_path / "c"])
    # The same model, generation, count and photo ids in both: only the photos differ.
    assert original.catalog.generation() == copy.catalog.generation()
    original.close()
    copy.close()
    for f in (tmp_path / "original" / "index").iterdir():
        shutil.copy2(f, tmp_path / "copy" / "index" / f.name)
    copy = _open(tmp_path / "copy")
    assert len(copy.index) == 10 and _finds_itself(copy, copy_photos)
    copy.close()
    original = _open(tmp_path / "original")  # the original is untouched by its copy
    assert len(original.index) == 10 and _finds_itself(original, original_photos)
    original.close()


def test_a_moved_library_keeps_working(tmp_path):
    lib = _open(tmp_path / "before")
    photos = _photos(tmp_path / "a", 5, seed=4)
    lib.add_folders([tmp_path / "a"])
    lib.close()
    shutil.move(tmp_path / "before", tmp_path / "after")
    lib = _open(tmp_path / "after")
    assert len(lib.index) == 5 and _finds_itself(lib, photos)
    more = _photos(tmp_path / "b", 3, seed=5)
    lib.add_folders([tmp_path / "b"])
    lib.close()
    lib = _open(tmp_path / "after")
    assert len(lib.index) == 8 and _finds_itself(lib, photos + more)
    lib.close()
