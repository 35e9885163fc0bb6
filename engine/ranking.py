"""Ranking a parsed query: words and meaning fused, exclusions applied, likely matches counted.

The order, best first:

1. photos whose words (captions, folder names, file name: the catalog's full-text index) hold
   all the content words of one of the query's text terms: a caption you typed finds its photo
   first, whatever the model thinks of the photo;
2. every other photo.

Within each, reciprocal rank fusion (RRF_K = 60) of the query vector's cosine ranking and the
BM25 ranking of the photos holding any of the content words. Measured on a captioned library
(tests/bench/bench_fusion.py: the flickr8k-1k test photos with four captions each, the fifth a
query): MRR 0.629 for this order, 0.602 for the fusion alone, 0.371 for all-words matches first
and then cosine, 0.315 for cosine alone.

A likely match is a photo of the first tier, or one whose calibrated strength reaches 0.5 (its
standard score the calibration's threshold, engine.calibration); at least MIN_LIKELY photos are
always shown. ``has:`` terms restrict the photos to those whose words hold theirs; an excluding
term (a minus with no weight) removes the photos it matches, even weakly (the calibration's
``exclude`` standard score), and those whose words hold all of its content words.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import calibration
from .calibration import STRONG, Calibration, Null
from .catalog import Catalog
from .errors import LibraryError, QueryError
from .index import IdFilter, VectorIndex
from .query import Term

if TYPE_CHECKING:
    from .models.base import DualEncoder

log = logging.getLogger(__name__)

MIN_LIKELY = 8  # always shown, however weak: a handful to judge the query by
PAGE = 200  # the most photos one call returns as likely matches; the next page has the rest
# Words held by more photos than this rank nothing (they say little about a photo, and ranking
# all of their photos would take longer than the search): "dog" in a library of captioned dogs.
TEXT_LIMIT = 1000
RRF_K = 60  # reciprocal rank fusion: a photo scores 1 / (RRF_K + rank) in each ranking

# A query's words are looked up in the catalog on one of these threads while the calling thread
# makes its vector: SQLite's lookups and the encoder's products both let go of the interpreter
# lock, so on two cores they overlap (tests/bench/bench_hybrid.py). The vector is made on the
# calling thread, where PyTorch keeps its own threads for image queries.
_LOOKUPS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chikaku-words")

# Little words that say nothing about a photo: left out when a text term's words are looked up
# (a term of only such words keeps them).
_STOPWORDS = """a an the and or of in on at to by for from with without into onto over under
near through while who whom which that this these those there here is are was were be been being
it its his her their them they he she we you i my our your as some any very just not no has have
had do does did up down out off"""
STOPWORDS = frozenset(_STOPWORDS.split())


def content_words(text: str) -> list[str]:
    """A text term's words worth looking up, lower-case."""
    words = re.findall(r"\w+", text.lower())
    # single letters too: the "s" of "grandma's", which the index holds as a word of its own
    kept = [w for w in words if w not in STOPWORDS and not (len(w) == 1 and w.isalpha())]
    return list(dict.fromkeys(kept or words))


def has_words(value: str) -> list[str]:
    """The words and quoted phrases of a ``has:`` term (engine.query keeps phrases quoted)."""
    found = [a or b for a, b in re.findall(r'"([^"]*)"|(\S+)', value)]
    return [w for w in found if any(ch.isalnum() for ch in w)]


@dataclass
class Ranked:
    """One page of ranked photos with their raw cosines, strengths and word matches."""

    ids: list[int]
    cosines: list[float]
    strengths: list[float]
    words: list[bool]


class Ranker:
    """Ranks for one model version: its index, calibration and reference photos; ``encode``
    turns vector terms (text, image, photo) into one query vector."""

    def __init__(self, catalog: Catalog, index: VectorIndex, calibration: Calibration,
                 reference: np.ndarray, encode: Callable[[list[Term]], np.ndarray]) -> None:
        self.catalog, self.index, self.cal = catalog, index, calibration
        self.reference, self.encode = reference, encode

    def rank(self, terms: list[Term], allowed: IdFilter | np.ndarray | None, k: int | None,
             offset: int = 0, drop: set[int] | frozenset[int] = frozenset()) -> Ranked:
        """Photos ``offset`` to ``offset + k`` of the ranking; ``k`` None: the likely matches
        from ``offset`` (at most PAGE of them). ``allowed``: the photos a filter (folder,
        dates) leaves, None: every photo; ``drop``: photos left out whatever they match (those
        the person marked wrong for this query)."""
        if allowed is not None and not isinstance(allowed, IdFilter):
            allowed = IdFilter(allowed)
        positive = [t for t in terms if not t.exclude and t.kind != "words"]
        must = [t for t in terms if t.kind == "words" and not t.exclude]
        if not positive and not must:
            raise QueryError("the query only takes photos away: say what to look for too")
        wanted = {(t.kind, t.value) for t in positive + must}
        if any((t.kind, t.value) in wanted for t in terms if t.exclude):
            raise QueryError("the terms of the query cancel each other out: the same term is "
                             "asked for and excluded")
        pool = self._pool(must, allowed)
        if pool is not None:
            allowed = pool
        if allowed is not None and len(allowed) == 0:
            return Ranked([], [], [], [])
        excluded = self._excluded_by_words(terms) | set(drop)
        # the query's words are looked up while its vector is made (_LOOKUPS)
        lookups = _LOOKUPS.submit(self._words_of, positive, allowed, excluded) if positive else None
        try:
            vec = self.encode(positive) if positive else None
            against = [self.encode([Term(1.0, t.kind, t.value)])
                       for t in self._excluding(terms)] if positive else []
        except BaseException:
            if lookups is not None:
                lookups.cancel()  # or left to finish: nobody waits for it
            raise
        firsts, some = lookups.result() if lookups is not None else ([], [])
        if vec is None:  # only has: terms: every photo holding the words, best BM25 first
            ordered = np.array(self._ordered(must), dtype=np.int64)
            ids = [i for i in ordered[allowed.contains(ordered)].tolist() if i not in excluded]
            page = ids[offset : offset + (PAGE if k is None else k)]
            return Ranked(page, [float("nan")] * len(page), [1.0] * len(page), [True] * len(page))
        null = Null.of(vec, self.reference)
        return self._fused(vec, null, firsts, some, allowed, excluded, against, k, offset,
                           words_pool=pool is not None)

    # -- the two tiers --------------------------------------------------------------------------
    def _fused(self, vec, null: Null, firsts: list[int], some: list[int], allowed,
               excluded: set[int], against: list[np.ndarray], k: int | None, offset: int,
               words_pool: bool) -> Ranked:
        """``firsts``: the photos holding all of a text term's words; ``some``: those holding
        any of them, best BM25 first (the text ranking of the fusion); ``against``: the
        excluding terms' vectors."""
        want = offset + (PAGE if k is None else k)
        ids, cos = self._rest(vec, allowed, excluded, against, want + len(firsts))
        found = np.fromiter(dict.fromkeys(firsts + some), dtype=np.int64)
        others = found[~np.isin(found, ids)]
        if len(others):  # photos found by their words that the nearest photos did not include
            other_ids, other_cos = self._cosines(vec, others.tolist())
            kept = ~np.isin(other_ids, self._matched(against, other_ids))
            ids = np.concatenate([ids, other_ids[kept]])  # ranked after the nearest, by cosine
            cos = np.concatenate([cos, other_cos[kept]])
        vector_rank = np.arange(len(ids))
        fused = 1.0 / (RRF_K + 1 + vector_rank)
        if some:  # each photo's place in the text ranking, where it has one
            text_ids = np.asarray(some, dtype=np.int64)
            by_id = np.argsort(text_ids, kind="stable")
            at = np.minimum(np.searchsorted(text_ids[by_id], ids), len(text_ids) - 1)
            held = text_ids[by_id][at] == ids
            fused[held] += 1.0 / (RRF_K + 1 + by_id[at][held])
        first = np.isin(ids, np.asarray(firsts, dtype=np.int64))
        order = np.lexsort((vector_rank, -fused, ~first))  # the last key sorts first
        ids = ids[order]
        cosines = cos[order].astype(np.float64)
        words = first[order] | words_pool
        strength = self.cal.strength(null.z(cosines))
        strength[words] = np.maximum(strength[words], STRONG)
        likely = max(MIN_LIKELY, int((strength >= 0.5).sum()))
        stop = min(likely, want) if k is None else want
        sl = slice(offset, stop)
        return Ranked(ids[sl].tolist(), cosines[sl].tolist(), strength[sl].tolist(),
                      words[sl].tolist())

    def _words_of(self, positive: list[Term], allowed, excluded: set[int]
                  ) -> tuple[list[int], list[int]]:
        """The photos holding all the content words of one text term, and those holding any of
        them (``_word_matches``)."""
        return (self._word_matches(positive, allowed, excluded),
                self._word_matches(positive, allowed, excluded, every=False))

    @staticmethod
    def _positive(terms: list[Term]) -> list[Term]:
        return [t for t in terms if not t.exclude and t.kind != "words"]

    @staticmethod
    def _excluding(terms: list[Term]) -> list[Term]:
        return [t for t in terms if t.exclude and t.kind != "words"]

    def _cosines(self, vec, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The cosines of these photos, best first (those without a vector left out)."""
        if not ids:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores, found = self.index.search(vec, len(ids), np.asarray(ids, dtype=np.int64),
                                          every=True)
        return found, scores

    def _rest(self, vec, allowed, skip: set[int], against: list[np.ndarray], want: int
              ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``want`` photos by cosine, leaving out ``skip`` and the photos an excluding
        term (its vector in ``against``) matches; fetched in growing rounds while exclusions
        thin them."""
        total = len(self.index) if allowed is None else len(allowed)
        if want <= 0 or total == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        fetch = want + len(skip) + (want if against else 0)
        every = False
        while True:
            scores, ids = self.index.search(vec, min(max(fetch, 1), total), allowed, every)
            keep = np.array([i not in skip for i in ids.tolist()], dtype=bool)
            ids, scores = ids[keep], scores[keep]
            if against and len(ids):
                gone = self._matched(against, ids)
                keep = ~np.isin(ids, gone)
                ids, scores = ids[keep], scores[keep]
            if len(ids) >= want:
                return ids[:want], scores[:want]
            if fetch >= total:
                if every or allowed is None or self.index.kind == "flat":
                    return ids[:want], scores[:want]
                # An inverted file looks only in the lists nearest the query, which may hold
                # few of a filter's photos (a small folder): then it looks in all of them.
                every = True
            fetch *= 4

    def _matched(self, against: list[np.ndarray], candidates: np.ndarray) -> np.ndarray:
        """The candidates that an excluding term (its vector in ``against``) matches, even
        weakly (calibration.exclude)."""
        if len(candidates) == 0:
            return np.zeros(0, np.int64)
        gone = []
        for v in against:
            scores, ids = self.index.search(v, len(candidates), candidates, every=True)
            z = Null.of(v, self.reference).z(scores)
            gone.append(ids[z >= self.cal.exclude])
        return np.concatenate(gone) if gone else np.zeros(0, np.int64)

    # -- words ----------------------------------------------------------------------------------
    def _pool(self, must: list[Term], allowed: IdFilter | None) -> IdFilter | None:
        """The photos holding every ``has:`` term's words (within ``allowed``); None: no such
        terms."""
        if not must:
            return None
        pool: set[int] | None = None
        for t in must:
            got = set(self.catalog.photos_with_words([has_words(t.value)], ranked=False))
            pool = got if pool is None else pool & got
        held = np.array(sorted(pool), dtype=np.int64)
        return IdFilter(held if allowed is None else held[allowed.contains(held)])

    def _ordered(self, must: list[Term]) -> list[int]:
        return self.catalog.photos_with_words([has_words(must[0].value)])

    def _excluded_by_words(self, terms: list[Term]) -> set[int]:
        gone: set[int] = set()
        for t in terms:
            if t.exclude and t.kind in ("text", "words"):
                words = has_words(t.value) if t.kind == "words" else content_words(t.value)
                gone.update(self.catalog.photos_with_words([words], ranked=False))
        return gone

    def _word_matches(self, positive: list[Term], allowed, excluded: set[int],
                      every: bool = True) -> list[int]:
        """Photos whose words hold all the content words of one positive text term (``every``),
        or any of them, best BM25 first."""
        terms = [content_words(t.value) for t in positive if t.kind == "text" and t.weight > 0]
        clauses = [c for c in terms if c] if every else [[w] for c in terms for w in c]
        if not clauses:
            return []
        found = self.catalog.photos_with_words(clauses, limit=TEXT_LIMIT, rare=TEXT_LIMIT)
        if allowed is not None and found:
            held = np.array(found, dtype=np.int64)
            found = held[allowed.contains(held)].tolist()
        return [i for i in found if i not in excluded]


class Scales:
    """Each model version's calibration, kept in the catalog (``calibration:<version>`` in its
    meta table) and made the first time that version searches or is activated; and the
    reference photos whose scores make a query's null distribution, sampled again whenever the
    catalog's vectors change."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._calibrations: dict[str, Calibration] = {}
        self._reference: tuple[str, int, np.ndarray] | None = None

    def reference(self, version: str, dim: int) -> np.ndarray:
        generation = self.catalog.generation()
        with self._lock:
            if self._reference is not None and self._reference[:2] == (version, generation):
                return self._reference[2]
        ids = calibration.reference_ids(self.catalog.vector_ids(version))
        _, vecs = self.catalog.vectors_by_id(version, ids.tolist(), dim)
        with self._lock:
            self._reference = (version, generation, vecs)
        return vecs

    def of(self, model: DualEncoder) -> Calibration:
        """The model version's calibration: remembered, stored, or made now."""
        with self._lock:
            cal = self._calibrations.get(model.version)
        if cal is None:
            cal = Calibration.from_json(self.catalog.get_meta(self._key(model.version)),
                                        model.version)
        if cal is None:
            cal = self.fit(model)
        with self._lock:
            self._calibrations[model.version] = cal
        return cal

    def fit(self, model: DualEncoder) -> Calibration:
        """Calibrate a model version on the library's captioned photos (the default scale when
        it has fewer than calibration.MIN_PAIRS), and store it."""
        rows = self.catalog.captioned_photo_rows()
        first: dict[int, str] = {}
        for pid, _path, _hash, caption in rows:
            first.setdefault(pid, caption)
        chosen = sorted(first)[:: max(1, len(first) // calibration.MAX_PAIRS)]
        chosen = chosen[: calibration.MAX_PAIRS]
        cal = Calibration(model.version)
        if len(chosen) >= calibration.MIN_PAIRS:
            ids, targets = self.catalog.vectors_by_id(model.version, chosen, model.dim)
            if len(ids) >= calibration.MIN_PAIRS:
                queries = model.encode_texts([first[int(i)] for i in ids])
                cal = calibration.fit(model.version, queries, targets,
                                      self.reference(model.version, model.dim))
        try:
            self.catalog.put_meta(self._key(model.version), cal.to_json())
        except LibraryError as e:  # a read-only library: used, not kept
            log.info("calibration of %s not stored: %s", model.version, e)
        with self._lock:
            self._calibrations[model.version] = cal
        return cal

    @staticmethod
    def _key(version: str) -> str:
        return f"calibration:{version}"
