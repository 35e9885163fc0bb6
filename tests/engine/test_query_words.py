"""Hyphenated words are words: "t-shirt" and "x-ray" are never read as "take 'shirt' away".
No file paths are involved, so the answer cannot depend on where the tests run."""

from __future__ import annotations

import pytest

from engine.query import Term, parse_query


@pytest.mark.parametrize("query", ["t-shirt", "x-ray", "a red t-shirt on a chair",
                                   "an x-ray of a hand", "a well-known place"])
def test_a_hyphenated_word_stays_one_text_term(query):
    assert parse_query(query) == [Term(1.0, "text", query)]


def test_hyphenated_words_beside_real_operators():
    assert parse_query("t-shirt -logo") == [Term(1.0, "text", "t-shirt"),
                                            Term(-1.0, "text", "logo", exclude=True)]
    assert parse_query("beach + x-ray - t-shirt") == [Term(1.0, "text", "beach"),
                                                      Term(1.0, "text", "x-ray"),
                                                      Term(-1.0, "text", "t-shirt", exclude=True)]
    assert parse_query('"x-ray" -"t-shirt"') == [Term(1.0, "text", "x-ray"),
                                                 Term(-1.0, "text", "t-shirt", exclude=True)]


def test_a_plus_inside_a_word_is_kept_too():
    assert parse_query("c++ book") == [Term(1.0, "text", "c++ book")]
