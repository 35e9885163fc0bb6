"""Captioned photos as training sees them, and the split that sets photos aside.

Photos (never captions) are set aside in two parts: the best state on the *selection* part is kept
(early stopping), and the *judging* part, which no choice saw, decides whether the result is
better than the model it would replace (``decide``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .. import config
from ..errors import EngineError
from .decide import MIN_JUDGING_PHOTOS

MIN_PHOTOS = config.MIN_PHOTOS


def fold(text: str) -> str:
    """A caption or query as marks compare them: case and spacing folded."""
    return " ".join(text.split()).casefold()


@dataclass
class CaptionedPhotos:
    ids: list[int]
    paths: list[str]
    hashes: list[str]
    captions: list[list[str]]
    # hard negatives: photos marked wrong for a query, by the folded query; a caption with the
    # same words pushes them away in training (the photos need no captions of their own)
    hard: HardNegatives | None = field(default=None, repr=False)

    def subset(self, idx) -> CaptionedPhotos:
        return CaptionedPhotos([self.ids[i] for i in idx], [self.paths[i] for i in idx],
                               [self.hashes[i] for i in idx], [self.captions[i] for i in idx],
                               self.hard)

    def hard_for(self, i: int, c: int) -> list[int]:
        """Indices (into ``hard.photos``) of the hard negatives of photo i's caption c."""
        if self.hard is None:
            return []
        return [j for j in self.hard.by_caption.get(fold(self.captions[i][c]), ())
                if self.hard.photos.ids[j] != self.ids[i]]


    @property
    def caption_count(self) -> int:
        return sum(len(c) for c in self.captions)


@dataclass
class HardNegatives:
    photos: CaptionedPhotos  # the photos marked wrong (no captions)
    by_caption: dict[str, list[int]]  # folded query -> indices into photos


@dataclass
class Split:
    train: CaptionedPhotos
    select: CaptionedPhotos  # chooses the state to keep (early stopping)
    judge: CaptionedPhotos  # decides whether the kept state is better; nothing chose on it


def split_photos(data: CaptionedPhotos, fraction: float, seed: int) -> Split:
    """Split by photo (all captions of a photo fall on the same side), reproducibly. The share
    ``fraction`` is set aside, half to select and half to judge; on a small library the judging
    part grows to the judging minimum, while at least half of the photos are left to train.

    Photos are ranked by a hash of the seed and their content, and the first ones are set aside:
    a photo's place in that order is its own, so captioning more photos (or marking search
    results right, which captions them) moves few of the photos already captioned from one part
    to another, and two fine-tunes that differ by a few photos are chosen and judged on nearly
    the same photos. Copies of one photo fall on the same side."""
    n = len(data.ids)
    if n < MIN_PHOTOS:
        raise EngineError(f"training needs at least {MIN_PHOTOS} captioned photos; the library "
                          f"has {n}. Add captions to more photos first.")
    perm = sorted(range(n), key=lambda i: (_rank(seed, data.hashes[i]), data.ids[i]))
    nominal = int(round(n * fraction))
    n_select = max(2, nominal // 2)
    n_judge = min(max(nominal - nominal // 2, MIN_JUDGING_PHOTOS), max(2, n // 2 - n_select))
    n_hold = n_select + n_judge
    return Split(data.subset(sorted(perm[n_hold:])), data.subset(sorted(perm[:n_select])),
                 data.subset(sorted(perm[n_select:n_hold])))


def _rank(seed: int, key: str) -> bytes:
    """A photo's place in the split order for this seed: a hash of the seed and its content."""
    return hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
