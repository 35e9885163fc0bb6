"""Calibrated scores: how far a photo stands out from the rest of the library for one query.

A raw cosine means different things for different queries: the bundled model's text queries top
out at 0.3-0.5 and its image queries at 0.6-1.0, and a 0.42 can be the best match of one text
query and an unrelated photo for the next. So each query's scores are standardised against its
own null distribution: the scores the same query vector gives a fixed sample of the library's
photos (REFERENCE_SIZE of them; for any one query nearly all are unrelated). A photo's standard
score is ``z = (cosine - mean) / sd`` over that sample; a threshold on ``z`` lets through about the
same share of unrelated photos whatever the query, text or image.

``strength`` maps ``z`` to [0, 1]: 0.5 at the threshold of a likely match, STRONG at the
standard score of a strong match, a logistic curve in between and beyond. In words: "strong"
(strength >= STRONG), "good" (>= 0.5, a likely match) or "weak".

The default threshold and strong score were chosen on the train split of flickr8k-1k (four folds
of 160 photos, never the test photos; ``tests/bench/bench_calibration.py`` prints the figures).
A library with enough captioned photos gets its own, per model version: each captioned photo's
first caption is a query whose answer is known, and the threshold is the standard score that
RECALL_TARGET of those photos reach (kept within THRESHOLD_RANGE, since the model may have been
fine-tuned on those very captions).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np

REFERENCE_SIZE = 2048  # photos whose scores make a query's null distribution
# Chosen on the train folds of flickr8k-1k with the bundled model a new library gets (each
# caption of each photo a query, the other photos of its fold the library; printed by
# tests/bench/bench_calibration.py): the threshold with the best recall whose likely matches take
# at most 11.5% of the library, a margin under the 15% asked for, since the share of a set of 20
# queries varies by about 2% (z >= 1.3: 73.8% of the captions' photos found, 11.4% of the library
# returned; z >= 1.15: 80.1% and 15.0%). A strong match stands out as far as the top quarter of
# the captions' own photos do.
DEFAULT_THRESHOLD = 1.3  # standard score of a likely match
DEFAULT_STRONG = 2.5  # standard score of a strong match
# An excluding term removes the photos it matches from this standard score on: the threshold that
# best tells the train photos showing a word (their captions say so) from those that do not,
# mean balanced accuracy over eight words a person might exclude (people, dog, water ...: 0.747;
# 0.737 at the likely threshold, 0.708 at 0).
DEFAULT_EXCLUDE = 0.75
STRONG = 0.8  # the strength of a strong match
RECALL_TARGET = 0.8  # share of captioned photos whose own caption finds them as likely matches
MIN_PAIRS = 20  # captioned photos needed to calibrate on a library's own captions
MAX_PAIRS = 300
THRESHOLD_RANGE = (0.75, 2.5)  # a library's own captions move the threshold within this


@dataclass(frozen=True)
class Calibration:
    """The scale of one model version: standard scores of a likely and of a strong match."""

    version: str
    threshold: float = DEFAULT_THRESHOLD
    strong: float = DEFAULT_STRONG
    source: str = "default"  # default | captions (the library's own, ``pairs`` of them)
    pairs: int = 0
    recall: float | None = None  # share of those pairs found as likely matches
    exclude: float = DEFAULT_EXCLUDE  # standard score from which an excluding term removes
    def strength(self, z: np.ndarray | float) -> np.ndarray:
        """Standard scores as strengths in [0, 1]: 0.5 at the threshold, STRONG at ``strong``."""
        slope = math.log(STRONG / (1 - STRONG)) / max(self.strong - self.threshold, 1e-3)
        z = np.asarray(z, dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-slope * (z - self.threshold)))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | None, version: str) -> Calibration | None:
        """A stored calibration of ``version``; None when there is none or it is unreadable."""
        try:
            data = json.loads(text or "")
            cal = cls(**data)
        except (ValueError, TypeError):
            return None
        ok = all(math.isfinite(v) for v in (cal.threshold, cal.strong, cal.exclude))
        return cal if ok and cal.version == version and cal.strong > cal.threshold else None


def label(strength: float) -> str:
    """A strength in words."""
    return "strong" if strength >= STRONG else "good" if strength >= 0.5 else "weak"


@dataclass(frozen=True)
class Null:
    """One query vector's scores over the reference photos: their mean and spread."""

    mean: float
    sd: float

    @classmethod
    def of(cls, query: np.ndarray, reference: np.ndarray) -> Null:
        if len(reference) < 2:
            return cls(0.0, 1.0)
        s = reference @ np.asarray(query, dtype=np.float32)
        return cls(float(s.mean()), max(float(s.std()), 1e-6))

    def z(self, cosines: np.ndarray | float) -> np.ndarray:
        return (np.asarray(cosines, dtype=np.float64) - self.mean) / self.sd

    def cosine(self, z: float) -> float:
        """The raw cosine at standard score ``z``."""
        return self.mean + z * self.sd


def reference_ids(ids: np.ndarray, size: int = REFERENCE_SIZE) -> np.ndarray:
    """A fixed sample of the library's photo ids (the same library gives the same sample)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) <= size:
        return ids
    return np.sort(np.random.default_rng(0).choice(ids, size, replace=False))


def fit(version: str, queries: np.ndarray, targets: np.ndarray,
        reference: np.ndarray) -> Calibration:
    """A calibration from queries whose right answer is known: ``queries[i]`` (a caption's
    vector) belongs to the photo with vector ``targets[i]``. Standard scores are taken against
    ``reference`` (a sample of the library's photo vectors), a target's own photo left out of
    its null."""
    if len(queries) < MIN_PAIRS or len(reference) < 2 * MIN_PAIRS:
        return Calibration(version)
    zs = []
    for q, t in zip(queries, targets, strict=True):
        s = reference @ q
        own = np.isclose(reference @ t, 1.0, atol=1e-4)  # the target itself, when sampled
        s = s[~own]
        zs.append((float(t @ q) - s.mean()) / max(float(s.std()), 1e-6))
    zs = np.asarray(zs)
    threshold = float(np.clip(np.quantile(zs, 1 - RECALL_TARGET), *THRESHOLD_RANGE))
    strong = threshold + (DEFAULT_STRONG - DEFAULT_THRESHOLD)
    return Calibration(version, threshold, strong, "captions", len(zs),
                       float((zs >= threshold).mean()),
                       threshold - DEFAULT_THRESHOLD + DEFAULT_EXCLUDE)
