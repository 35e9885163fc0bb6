"""Feedback marks: a result marked wrong leaves its query's results, one marked right moves up
and becomes a caption pair; marks belong to the query's words, survive a restart, and say
plainly what they cannot take."""

from __future__ import annotations

import json

import pytest

from engine.cli import main as cli
from engine.errors import LibraryError, QueryError
from engine.library import Library
from tests.conftest import TINY_MODEL

QUERY = "a dog runs across the grass"


@pytest.fixture
def lib(catalog_url, tiny_lib, photos):
    """The 12 photos indexed, the catalog in SQLite, then in PostgreSQL."""
    tiny_lib.add_folders([photos])
    return tiny_lib


def _ranking(lib, query: str = QUERY) -> list[int]:
    return [h.photo_id for h in lib.search(query, k=12)]


def test_a_photo_marked_wrong_leaves_the_querys_results_and_only_that_querys(lib):
    before = _ranking(lib)
    wrong = before[0]
    lib.mark(QUERY, wrong, False)
    after = _ranking(lib)
    assert wrong not in after and len(after) == len(before) - 1
    assert wrong in _ranking(lib, "a photo of people")  # another query keeps it
    assert lib.feedback.hard_negatives() == {QUERY: [wrong]}
    lib.mark(QUERY, wrong, None)  # unmarked: back in
    assert _ranking(lib) == before


def test_a_photo_marked_right_moves_up_and_becomes_a_caption_of_its_photo(lib):
    before = _ranking(lib)
    right = before[-1]  # the weakest match
    lib.mark(QUERY, right, True)
    after = _ranking(lib)
    assert after.index(right) < before.index(right)
    assert after[0] == right  # its new caption holds exactly the query's words
    assert QUERY in lib.captions(right)
    # marked wrong instead: the caption goes, and so does the photo
    lib.mark(QUERY, right, False)
    assert QUERY not in lib.captions(right)
    assert right not in _ranking(lib)


def test_the_marks_toward_the_right_photos_move_the_rest_of_the_ranking(lib):
    """Not only the marked photos move: the query itself moves toward them (Rocchio)."""
    before = _ranking(lib)
    lib.mark(QUERY, before[-1], True)
    lib.mark(QUERY, before[-2], True)
    rest_before = [p for p in before if p not in before[-2:]]
    rest_after = [p for p in _ranking(lib) if p not in before[-2:]]
    assert sorted(rest_after) == sorted(rest_before) and rest_after != rest_before


def test_marks_belong_to_the_querys_words_whatever_their_case_and_spacing(lib):
    wrong = _ranking(lib)[0]
    lib.mark("A dog  runs across the GRASS ", wrong, False)
    assert wrong not in _ranking(lib)
    assert lib.feedback.marks(QUERY) == ([], [wrong])


def test_marks_and_their_captions_survive_a_restart(lib, tmp_path):
    right, wrong = _ranking(lib)[-1], _ranking(lib)[0]
    lib.mark(QUERY, right, True)
    lib.mark(QUERY, wrong, False)
    root = lib.root
    lib.close()
    again = Library.open(root, device="cpu", default_model=TINY_MODEL)
    try:
        assert again.feedback.marks(QUERY) == ([right], [wrong])
        ranking = _ranking(again)
        assert ranking[0] == right and wrong not in ranking
    finally:
        again.close()


def test_what_a_mark_cannot_take_is_said_plainly(lib):
    photo = _ranking(lib)[0]
    with pytest.raises(QueryError, match="type what you are looking for"):
        lib.mark("   ", photo, True)
    with pytest.raises(LibraryError, match="no photo with id 999999"):
        lib.mark(QUERY, 999_999, True)
    with pytest.raises(QueryError, match="too long"):
        lib.mark("dog " * 200, photo, True)
    assert lib.feedback_marks() == []  # nothing half-written


def test_clearing_a_query_takes_back_its_marks_and_their_captions(lib):
    ranking = _ranking(lib)
    lib.mark(QUERY, ranking[-1], True)
    lib.mark(QUERY, ranking[0], False)
    assert lib.feedback_clear(QUERY) == 2
    assert QUERY not in lib.captions(ranking[-1])
    assert _ranking(lib) == ranking


def test_the_feedback_command_marks_lists_and_clears(lib, photos, capsys):
    ranking = _ranking(lib)
    right = lib.photo(ranking[-1]).path
    root = str(lib.root)
    lib.close()
    assert cli(["feedback", "right", QUERY, right, "--library", root]) == 0
    assert cli(["feedback", "wrong", QUERY, str(ranking[0]), "--library", root]) == 0
    capsys.readouterr()
    assert cli(["feedback", "list", "--json", "--library", root]) == 0
    marks = json.loads(capsys.readouterr().out)
    assert [(m["path"], m["right"]) for m in marks] == [(right, True),
                                                        (lib_path(root, ranking[0]), False)]
    assert cli(["feedback", "wrong", QUERY, "/no/such/photo.jpg", "--library", root]) != 0
    assert "not in the library" in capsys.readouterr().err
    assert cli(["feedback", "clear", QUERY, "--library", root]) == 0
    assert "cleared 2 marks" in capsys.readouterr().out


def lib_path(root: str, photo_id: int) -> str:
    again = Library.open(root, device="cpu", default_model=TINY_MODEL)
    try:
        return again.photo(photo_id).path
    finally:
        again.close()


def test_a_query_of_bytes_that_are_not_text_searches_and_takes_no_mark(lib):
    import os

    query = os.fsdecode(b"a dog \xff\xfe runs")  # as a non-UTF-8 locale's argument gives it
    photo = _ranking(lib)[0]
    assert lib.feedback_for(query) == ([], [])
    with pytest.raises(QueryError, match="not text"):
        lib.mark(query, photo, True)
