"""Query parsing: text, image files, indexed photos, and weighted sums of them.

    a dog running through snow            one text term
    "beach" + 0.5*holiday.jpg - "people"  weighted terms, combined in the representation space
    sunset -people                        a leading minus takes a term away
    photo:42                              the indexed photo with id 42 ("more like this")

An operator is a ``+`` or ``-`` at the start or after a space or a closing quote, so words such
as "t-shirt" and paths such as ``/photos/a-b.jpg`` stay whole. A bare term that names an existing
image file is an image query; quote it to search for the words instead.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .errors import QueryError
from .scan import is_image_name

_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*\*\s*(.*)$", re.S)
_PHOTO = re.compile(r"^photo:(\d+)$")
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
    kind: str  # text | image | photo
    value: str


@dataclass(frozen=True)
class Hit:
    photo_id: int
    path: str
    score: float
    date: datetime | None = None
    width: int | None = None
    height: int | None = None


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
        if c in QUOTES and (prev.isspace() or prev in "+-*" or i == 0):
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
        body = body.strip()
        if not body:
            raise QueryError(f"a term of the query is empty: {query}")
        terms.append(_term(sign * weight, body, quoted))
    if not terms:
        raise QueryError("the query is empty: type some words or give a photo")
    return terms


def _term(weight: float, body: str, quoted: bool) -> Term:
    if not quoted:
        m = _PHOTO.match(body)
        if m:
            if len(m.group(1)) > 19 or int(m.group(1)) >= 2**63:  # beyond any id there can be
                raise QueryError(f"no photo with id {m.group(1)} in the library")
            return Term(weight, "photo", m.group(1))
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
                return Term(weight, "image", str(candidate.resolve()))
            if " " not in body.strip():
                raise QueryError(f"no such image file: {body} (put it in quotes to search for "
                                 "the words instead)")
    return Term(weight, "text", body)
