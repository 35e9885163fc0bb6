"""Exclusion patterns say what they do before they do it, apply at once, and lose no caption."""

from __future__ import annotations

import shutil

from tests.conftest import dataset_images


def _library_with_drafts(tiny_lib, photos):
    drafts = photos / "drafts"
    drafts.mkdir()
    for p in dataset_images()[20:23]:
        shutil.copy2(p, drafts / p.name)
    shutil.copy2(dataset_images()[23], photos / "IMG_tmp.jpg")
    tiny_lib.add_folders([photos])
    return drafts


def test_the_count_shown_before_is_what_leaves_and_captions_come_back(tiny_lib, photos):
    drafts = _library_with_drafts(tiny_lib, photos)
    before = tiny_lib.status().photos
    assert before == 16
    captioned = tiny_lib.photo_by_path(next(drafts.iterdir()))
    tiny_lib.set_captions(captioned.id, ["the first draft of the garden"])

    preview = tiny_lib.excluded_by(["drafts", "*_tmp.jpg", "  "])
    assert sorted(preview) == sorted([str(p) for p in drafts.iterdir()]
                                     + [str(photos / "IMG_tmp.jpg")])
    assert tiny_lib.status().photos == before  # looking changes nothing

    left = tiny_lib.set_exclusions(["drafts", "*_tmp.jpg"])
    assert left == len(preview) == 4
    status = tiny_lib.status()
    assert status.photos == before - 4 and status.kept_captions == 1
    shown = {h.path for h in tiny_lib.search("a photo", k=50)}
    assert not shown & set(preview)

    # a rescan respects the patterns: nothing excluded comes back
    tiny_lib.reindex()
    assert tiny_lib.status().photos == before - 4

    # the pattern removed and the folder indexed again: the photo returns with its caption
    assert tiny_lib.set_exclusions([]) == 0
    tiny_lib.reindex()
    assert tiny_lib.status().photos == before
    back = tiny_lib.photo_by_path(captioned.path)
    assert tiny_lib.captions(back.id) == ["the first draft of the garden"]


def test_a_pattern_never_matches_the_library_folder_itself(tiny_lib, photos):
    _library_with_drafts(tiny_lib, photos)
    assert tiny_lib.excluded_by([photos.name]) == []  # the folder's own name is above its photos
    assert tiny_lib.set_exclusions([photos.name]) == 0
    assert tiny_lib.status().photos == 16
