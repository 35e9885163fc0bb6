"""Recall figures: their names in one place, and the typed value every evaluation returns (light:
no numpy, no torch, so the command line and the app can lay out tables without loading the model
code)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

KS = (1, 5, 10)
DIRECTIONS = (("t2i", "text->image"), ("i2t", "image->text"))
# Every recall figure's key, in the order tables show them: t2i_r1 ... i2t_r10.
RECALL_KEYS = tuple(f"{d}_r{k}" for d, _ in DIRECTIONS for k in KS)


@dataclass(frozen=True, eq=False)
class Recall(Mapping[str, float]):
    """Recall@1/5/10 in percent, both ways: text->image (the caption's photo in the top K) and
    image->text (any of the photo's captions in the top K).

    Read as attributes (``r.t2i_r10``) or, for tables and JSON, as a read-only mapping over
    RECALL_KEYS in that order (``dict(r)``); it equals a dict holding the same six figures."""

    t2i_r1: float
    t2i_r5: float
    t2i_r10: float
    i2t_r1: float
    i2t_r5: float
    i2t_r10: float

    @classmethod
    def of(cls, figures: Mapping[str, float]) -> Recall:
        """From a mapping holding (at least) the six figures, e.g. a model's stored info."""
        return cls(**{k: float(figures[k]) for k in RECALL_KEYS})

    def __getitem__(self, key: str) -> float:
        if key not in RECALL_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(RECALL_KEYS)

    def __len__(self) -> int:
        return len(RECALL_KEYS)

    @property
    def mean(self) -> float:
        """One number for "better or worse": the mean of the six figures."""
        return sum(self.values()) / len(RECALL_KEYS)
