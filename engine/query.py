"""Query parsing: text, image files, indexed photos, words that must appear, and weighted sums.

    a dog running through snow            one text term
    "beach" + 0.5*holiday.jpg             weighted terms, combined in the representation space
    sunset -people                        exclusion: no photo that matches "people"
    sunset - 0.5*people                   weighted subtraction: the query moves away from people
    has:Yorkshire                         these words must appear (captions, folder or file name)
    has:"Tour de Yorkshire" bob           ... a quoted phrase (words in this order) and a word
    photo:42                              the indexed photo with id 42 ("more like this")
    @mia + "red slide"                    a name given to some photos (engine.names), and words

An operator is a ``+`` or ``-`` at the start or after a space or a closing quote, so words such
as "t-shirt" and paths such as ``/photos/a-b.jpg`` stay whole. A bare term that names an existing
image file is an image query; quote it to search for the words instead.

A minus with no weight excludes: the photos that match the term as a likely match (its
calibrated score passes the threshold) leave the results, and so do the photos whose captions,
folder or file name hold all its words. A minus with a written weight (``- 0.5*people``,
``-1*people``) subtracts the term's vector instead, as a plus adds one.

Besides meaning, every text term is looked up in the library's words (captions, folder names,
file names; stemmed, any case): photos whose words hold all of a term's words (little words such
as "a" and "the" aside) come first. ``has:`` makes words a condition: only photos whose words
hold them all are found (``beach -has:people`` leaves out those that hold "people"). Like any
term it runs to the next operator: ``has:Bob + beach`` is Bob's photos, the beach ones first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .calibration import STRONG
from .errors import QueryError
from .scan import is_image_name

_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*\*\s*(.*)$", re.S)
_PHOTO = re.compile(r"^photo:(\d+)$")
_NAME = re.compile(r"@[^\W_][\w'-]*")  # engine.names.NAME_TERM (a layer above: not imported)
QUOTES = "\"'“”"


_SUBJECTS = ("a dog", "a cat", "a child", "two people", "a man", "a woman", "a group of friends",
             "a bird", "a car", "a bicycle", "a boat", "a horse")
_PLACES = ("on the beach", "in the snow", "in a park", "on a city street", "at home",
           "in the water", "on a mountain", "at a party", "in a forest", "at night")


def sample_queries() -> list[str]:
    """Everyday text queries, for tuning an approximate index to how people search."""
    return [f"{s} {p}" for s in _SUBJECTS for p in _PLACES]


@dataclass(frozen=True)
class Term:
    weight: float
    kind: str  # text | image | photo | name (@name) | words (has:)
    value: str
    exclude: bool = False  # a minus with no weight: leave out what matches


WORDS_PREFIX = "has:"


@dataclass(frozen=True)
class Hit:
    photo_id: int
    path: str
    score: float  # the raw cosine of the photo and the query (its scale varies by query)
    date: datetime | None = None
    width: int | None = None
    height: int | None = None
    # calibrated: 0.5 at the threshold of a likely match, the same for every query (see
    # engine.calibration); a photo whose words hold all the query's words counts as strong
    strength: float = 0.0
    words: bool = False  # its captions, folder or file name hold the query's words

    @property
    def match(self) -> str:
        """The strength in words: strong, good or weak."""
        return "strong" if self.strength >= STRONG else "good" if self.strength >= 0.5 else "weak"


def _split(query: str) -> list[tuple[int, list[tuple[str, bool]]]]:
    """Split into (sign, parts) pieces at top-level + and - operators; parts are
    (text, was_quoted)."""
    pieces: list[tuple[int, list[tuple[str, bool]]]] = []
    sign, parts, saw_op, i, n = 1, [], False, 0, len(query)
    unclosed: set[str] = set()  # closers none of which is left: never looked for again (linear)

    def flush() -> bool:
        if any(q or t.strip() for t, q in parts):
            pieces.append((sign, parts))
            return True
        return False

    while i < n:
        c = query[i]
        prev = query[i - 1] if i else " "
        if c in QUOTES and (prev.isspace() or prev in "+-*" or i == 0
                            or query[max(0, i - len(WORDS_PREFIX)):i].lower() == WORDS_PREFIX):
            closers = "'" if c == "'" else "\"”"
            close = -1 if closers in unclosed else next(
                (j for j in range(i + 1, n) if query[j] in closers
                 and (j + 1 == n or query[j + 1].isspace() or query[j + 1] in "+-")), -1)
            if close >= 0:  # otherwise it is an apostrophe or a stray quote: keep it as text
                parts.append((query[i + 1 : close], True))
                i = close + 1
                continue
            unclosed.add(closers)
        if c in "+-" and (prev.isspace() or prev in QUOTES):
            if not flush() and pieces:
                raise QueryError(f"two operators in a row in the query: {query}")
            sign, parts, saw_op = (1 if c == "+" else -1), [], True
            i += 1
            continue
        parts.append((c, False))
        i += 1
    if not flush() and saw_op:
        raise QueryError(f"the query ends with an operator: {query}")
    return pieces


def parse_query(query: str) -> list[Term]:
    if not isinstance(query, str) or not query.strip():
        raise QueryError("the query is empty: type some words or give a photo")
    terms = []
    for sign, parts in _split(query.strip()):
        quoted = any(q for _, q in parts)
        lead = "".join(t for t, q in parts[: next((k for k, (_, q) in enumerate(parts) if q),
                                                   len(parts))])
        weight, body = 1.0, "".join(t for t, _ in parts)
        m = _WEIGHT.match(lead)
        if m:
            weight = float(m.group(1))
            if not math.isfinite(weight):
                raise QueryError(f"a weight in the query is too large: {m.group(1)[:20]}...")
            body = m.group(2) + "".join(t for t, _ in parts)[len(lead):]
            lead = m.group(2)
        body = body.strip()
        if not body:
            raise QueryError(f"a term of the query is empty: {query}")
        if lead.lstrip().lower().startswith(WORDS_PREFIX):
            if m:
                raise QueryError(f"{WORDS_PREFIX} takes no weight: its words appear or they do not")
            terms.append(_words(sign, parts))
            continue
        terms.append(_term(sign * weight, body, quoted, exclude=sign < 0 and not m))
    if not terms:
        raise QueryError("the query is empty: type some words or give a photo")
    return terms


def _words(sign: int, parts: list[tuple[str, bool]]) -> Term:
    """A ``has:`` term: its words must appear (a quoted phrase: in that order), or with a minus
    must not. Its value keeps phrases in double quotes: ``"Tour de Yorkshire" bob``."""
    body = "".join(f' "{t}" ' if q else t for t, q in parts).strip()
    body = " ".join(body[len(WORDS_PREFIX):].split())
    if not any(ch.isalnum() for ch in body):
        raise QueryError(f"{WORDS_PREFIX} needs words after it, e.g. {WORDS_PREFIX}Yorkshire")
    return Term(float(sign), "words", body, exclude=sign < 0)


def _term(weight: float, body: str, quoted: bool, exclude: bool = False) -> Term:
    if not quoted:
        if body.startswith("@") and _NAME.match(body):
            named = _name_term(weight, body, exclude)
            if named is not None:
                return named
        m = _PHOTO.match(body)
        if m:
            if len(m.group(1)) > 19 or int(m.group(1)) >= 2**63:  # beyond any id there can be
                raise QueryError(f"no photo with id {m.group(1)} in the library")
            return Term(weight, "photo", m.group(1), exclude)
        try:
            candidate = Path(body).expanduser()
        except (RuntimeError, ValueError):  # "~word" naming no user, a NUL character
            candidate = Path(body)
        if is_image_name(body) and "\n" not in body:
            try:
                found = candidate.is_file()
            except OSError:  # a name too long for the filesystem, a folder that cannot be read
                found = False
            if found:
                return Term(weight, "image", str(candidate.resolve()), exclude)
            if " " not in body.strip():
                raise QueryError(f"no such image file: {body} (put it in quotes to search for "
                                 "the words instead)")
    return Term(weight, "text", body, exclude)



def _name_term(weight: float, body: str, exclude: bool) -> Term | None:
    """``@mia``: the photos named "mia" (its value is the name, without the @); None when the
    term is not a name (``@home!`` is words). A name is one word: what follows it needs an
    operator (``@mia + red slide``)."""
    m = _NAME.match(body)
    if m.end() == len(body):
        return Term(weight, "name", m.group(0)[1:], exclude)
    if body[m.end()].isspace():
        rest = body[m.end():].strip()
        raise QueryError(f"a name is one word: to combine {m.group(0)} with \"{rest}\", write "
                         f"{m.group(0)} + {rest} (or put it all in quotes to search for the "
                         "words)")
    return None
