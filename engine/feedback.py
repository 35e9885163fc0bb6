"""Feedback that trains: a person marks a result right or wrong for the query on screen.

At once, the query's results re-rank: the query moves toward the photos marked right and away
from those marked wrong (Rocchio's relevance feedback, with his textbook weights: the query 1,
the right photos' mean 0.75, the wrong photos' mean 0.25), and a photo marked wrong leaves that
query's results. Then, at the next fine-tune, a right mark is a caption pair like any other and a
wrong mark a hard negative of the query's caption (engine.training.loss).

Marks belong to the query's words, folded (case, spaces): "Dog in  Snow" and "dog in snow" are
one query. A query of images alone has no words to learn, so it takes no marks.
"""

from __future__ import annotations

from .catalog import Catalog
from .catalog_feedback import FeedbackCatalog, MarkRow
from .errors import QueryError
from .query import Term
from .scan import is_utf8

RIGHT_WEIGHT = 0.75
WRONG_WEIGHT = 0.25
MAX_QUERY = 500  # characters: a query longer than this is not a caption


def query_key(text: str) -> str:
    return " ".join(text.split()).casefold()


def marked_text(query: str | None) -> str:
    """The words a mark is kept under; a QueryError when there are none."""
    text = " ".join((query or "").split())
    if not text:
        raise QueryError("marks teach the words of a query: type what you are looking for, "
                         "then mark its results")
    if len(text) > MAX_QUERY:
        raise QueryError(f"the query is too long to learn from (over {MAX_QUERY} characters)")
    if not is_utf8(text):
        raise QueryError("the query holds bytes that are not text: retype it to mark its "
                         "results")
    return text


class Feedback:
    def __init__(self, catalog: Catalog) -> None:
        self.store = FeedbackCatalog(catalog)

    def mark(self, query: str, photo_id: int, right: bool | None) -> None:
        """Right (True), wrong (False) or no mark (None) for a photo and a query."""
        text = marked_text(query)
        self.store.set(text, query_key(text), int(photo_id), right)

    def marks(self, query: str) -> tuple[list[int], list[int]]:
        """(right, wrong) photo ids for a query (none for words that are not text: no mark
        can have been kept for them)."""
        if not is_utf8(query):
            return [], []
        return self.store.of_query(query_key(query))

    def terms(self, query: str | None) -> tuple[list[Term], set[int]]:
        """What a query's marks add to it: terms pulling toward the right photos and away from
        the wrong ones, and the wrong photos to leave out of its results."""
        if not query or not query.strip():
            return [], set()
        right, wrong = self.marks(query)
        terms = [Term(RIGHT_WEIGHT / len(right), "photo", str(p)) for p in right]
        terms += [Term(-WRONG_WEIGHT / len(wrong), "photo", str(p)) for p in wrong]
        return terms, set(wrong)

    def all(self) -> list[MarkRow]:
        return self.store.all()

    def hard_negatives(self) -> dict[str, list[int]]:
        """Caption text → photos marked wrong for it (the next fine-tune's hard negatives)."""
        return self.store.wrong_by_query()

    def clear(self, query: str) -> int:
        return self.store.clear(query_key(query))
