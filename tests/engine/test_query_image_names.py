"""A query photo whose file name holds bytes that are not UTF-8 (as any Linux file name may):
Python gives such a name as text with lone surrogates, and the library searches with the file it
names, or says in plain words that there is no such file."""

from __future__ import annotations

import os
import shutil

import pytest

from engine.errors import EngineError


def test_a_query_photo_named_with_bytes_that_are_not_utf8_finds_itself(tiny_lib, photos,
                                                                        tmp_path):
    tiny_lib.add_folders([photos])
    original = sorted(photos.glob("*.jpg"))[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    raw = os.fsencode(elsewhere) + b"/caf\xe9 \xff.jpg"  # a Latin-1 name from an old camera
    shutil.copyfile(original, raw)
    query = os.fsdecode(raw)
    hits = tiny_lib.search(image=query, k=3)
    assert hits[0].path == str(original)  # the same photo, under its library name, comes first


def test_a_missing_query_photo_named_with_bytes_that_are_not_utf8_is_a_message(tiny_lib, photos,
                                                                                tmp_path):
    tiny_lib.add_folders([photos])
    query = os.fsdecode(os.fsencode(tmp_path) + b"/gone \xff.jpg")
    with pytest.raises(EngineError) as caught:
        tiny_lib.search(image=query)
    message = str(caught.value)
    message.encode("utf-8")  # printable as it is
    assert "no such image file" in message and "gone \\xff.jpg" in message
