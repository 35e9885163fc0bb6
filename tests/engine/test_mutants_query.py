"""What a typed query means: weights, signs, quotes, photo ids and image files, and the
message for each kind of malformed query.

Written against the mutants tests/bench/mutation.py found surviving in the query parser of
engine/search.py."""

from __future__ import annotations

import pytest

from engine.errors import QueryError
from engine.query import Term, parse_query


def text(weight: float, value: str) -> Term:
    return Term(weight, "text", value)


def no(value: str) -> Term:
    """A minus with no weight: an exclusion."""
    return Term(-1.0, "text", value, exclude=True)


@pytest.mark.parametrize("query, terms", [
    ("a dog running through snow", [text(1.0, "a dog running through snow")]),
    ("  sunset  ", [text(1.0, "sunset")]),
    ("sunset -people", [text(1.0, "sunset"), no("people")]),
    ("-people", [no("people")]),
    ("beach +sea", [text(1.0, "beach"), text(1.0, "sea")]),
    ("0.5*beach", [text(0.5, "beach")]),
    (".5 * beach", [text(0.5, "beach")]),
    ("2.*beach + 3 * sea", [text(2.0, "beach"), text(3.0, "sea")]),
    ("beach - 2*people", [text(1.0, "beach"), text(-2.0, "people")]),
    ("2*x", [text(2.0, "x")]),
    ("a*b", [text(1.0, "a*b")]),
])
def test_weights_and_signs(query, terms):
    assert parse_query(query) == terms


@pytest.mark.parametrize("query, terms", [
    ('"beach" + 0.5*"sea"', [text(1.0, "beach"), text(0.5, "sea")]),
    ('"sunset"-"people"', [text(1.0, "sunset"), no("people")]),
    ('"a + b - c"', [text(1.0, "a + b - c")]),
    ("'a - b'", [text(1.0, "a - b")]),
    ('“curly - quotes”', [text(1.0, "curly - quotes")]),
    ('“mixed - closers"', [text(1.0, "mixed - closers")]),
    ('0.5*"x y" z', [text(0.5, "x y z")]),
    ('"photo:42"', [text(1.0, "photo:42")]),
    ('"holiday.jpg"', [text(1.0, "holiday.jpg")]),
    ("the dog's ball", [text(1.0, "the dog's ball")]),
    ("'tis the season", [text(1.0, "'tis the season")]),
    ('say "cheese"please', [text(1.0, 'say "cheese"please')]),
    ('"a"b" c', [text(1.0, 'a"b c')]),
    ("rock 'n' roll - 'n' dogs", [text(1.0, "rock n roll"), no("n dogs")]),
    ("it's 'ok' - no 'way'", [text(1.0, "it's ok"), no("no way")]),
    ('" a b"', [text(1.0, "a b")]),
    ('"MAX power"', [text(1.0, "MAX power")]),
    ("'MAX power'", [text(1.0, "MAX power")]),
])
def test_quotes_keep_what_they_hold_as_words(query, terms):
    assert parse_query(query) == terms


@pytest.mark.parametrize("query", [
    "a Xylophone", 'X"ray"', '"big"x', '"big"Xmas', '"c++"book', "the dog's 'ball and 'stick",
])
def test_a_quote_or_sign_inside_a_word_is_part_of_it(query):
    assert parse_query(query) == [text(1.0, query)]


def test_a_quote_never_closed_is_part_of_the_words():
    assert parse_query("dog's 'ball - cat") == [text(1.0, "dog's 'ball"), no("cat")]
    assert parse_query('"open - shut') == [text(1.0, '"open'), no("shut")]


def test_indexed_photos_by_id():
    assert parse_query("photo:42") == [Term(1.0, "photo", "42")]
    assert parse_query("photo:7 - 0.5*photo:8") == [Term(1.0, "photo", "7"),
                                                    Term(-0.5, "photo", "8")]
    assert parse_query(f"photo:{2**63 - 1}") == [Term(1.0, "photo", str(2**63 - 1))]
    assert parse_query("photo:42x") == [text(1.0, "photo:42x")]


@pytest.mark.parametrize("query", [f"photo:{2**63}", "photo:" + "9" * 20,
                                   "photo:" + "0" * 19 + "1"])
def test_an_id_beyond_any_photo_is_a_clear_error(query):
    with pytest.raises(QueryError, match="^no photo with id .* in the library$"):
        parse_query(query)


def test_an_image_file_is_an_image_query(tmp_path, monkeypatch):
    photo = tmp_path / "holiday.jpg"
    photo.write_bytes(b"not decoded here")
    assert parse_query(str(photo)) == [Term(1.0, "image", str(photo.resolve()))]
    assert parse_query(f"beach + 0.5*{photo}") == [text(1.0, "beach"),
                                                   Term(0.5, "image", str(photo.resolve()))]
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_query("~/holiday.jpg") == [Term(1.0, "image", str(photo.resolve()))]
    monkeypatch.chdir(tmp_path)
    assert parse_query("holiday.jpg") == [Term(1.0, "image", str(photo.resolve()))]


def test_a_missing_image_file_is_an_error_unless_it_reads_as_words(tmp_path):
    with pytest.raises(QueryError, match=r"^no such image file: \S+missing\.jpg \(put it in "
                                         r"quotes to search for the words instead\)$"):
        parse_query(str(tmp_path / "missing.jpg"))
    assert parse_query("my holiday.jpg") == [text(1.0, "my holiday.jpg")]
    assert parse_query("notes.txt") == [text(1.0, "notes.txt")]
    assert parse_query("a\nb.jpg") == [text(1.0, "a\nb.jpg")]


def test_a_folder_named_like_an_image_is_not_an_image(tmp_path):
    folder = tmp_path / "album.jpg"
    folder.mkdir()
    with pytest.raises(QueryError, match="no such image file"):
        parse_query(str(folder))


def test_a_name_too_long_for_the_filesystem_is_a_missing_file_not_a_crash():
    with pytest.raises(QueryError, match="no such image file"):
        parse_query("/" + "a" * 5000 + ".jpg")


def test_a_name_with_a_nul_or_an_unknown_user_is_not_a_crash():
    with pytest.raises(QueryError, match="no such image file"):
        parse_query("~no-such-user-here/x.jpg")
    with pytest.raises(QueryError, match="no such image file"):
        parse_query("a\x00b.jpg")


@pytest.mark.parametrize("query, message", [
    ("", "the query is empty: type some words or give a photo"),
    ("   ", "the query is empty: type some words or give a photo"),
    ("beach + - sea", "two operators in a row in the query: beach + - sea"),
    ("beach + +", "two operators in a row in the query: beach + +"),
    ("beach +", "the query ends with an operator: beach +"),
    ("-", "the query ends with an operator: -"),
    ('""', 'a term of the query is empty: ""'),
    ('beach + ""', 'a term of the query is empty: beach + ""'),
    ("0.5*", "a term of the query is empty: 0.5*"),
    ("0.5* + x", "a term of the query is empty: 0.5* + x"),
])
def test_malformed_queries_say_what_is_wrong(query, message):
    with pytest.raises(QueryError) as caught:
        parse_query(query)
    assert str(caught.value) == message


def test_a_weight_too_large_to_be_a_number_is_a_clear_error():
    with pytest.raises(QueryError) as caught:
        parse_query("9" * 400 + "*beach")
    assert str(caught.value) == f"a weight in the query is too large: {'9' * 20}..."


def test_not_a_string_is_an_empty_query():
    with pytest.raises(QueryError, match="the query is empty"):
        parse_query(None)
