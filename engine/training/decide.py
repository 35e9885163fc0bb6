"""Whether a fine-tuned model searches better than the one it would replace, judged honestly.

Training keeps the state that scored best on one part of the held-out photos (the *selection*
photos). Judged again on those same photos, the best of several noisy measurements looks better
than it is: a model trained on meaningless captions then wins about three times in four. So the
decision is made on the other part (the *judging* photos), which no choice during training saw,
and it needs more than a higher mean: a paired bootstrap over those photos must put the gain
above zero with 97.5% confidence. With too few judging photos no honest decision is possible, and
the verdict says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..evaluate import KS, ranks

MIN_JUDGING_PHOTOS = 10  # below this, a bootstrap over photos says little: no automatic switch
RESAMPLES = 4000
CONFIDENCE = 0.975  # one-sided: the gain's lower bound at this level must be above zero


def photo_scores(image_vecs: np.ndarray, text_vecs: np.ndarray, caption_image: np.ndarray
                 ) -> np.ndarray:
    """One number per photo, in percent: the mean of its six recall hits (text->image at 1, 5
    and 10 averaged over its captions; image->text at 1, 5 and 10)."""
    t2i, i2t = ranks(image_vecs, text_vecs, caption_image)
    n = len(image_vecs)
    counts = np.bincount(caption_image, minlength=n).astype(np.float64)
    hits = []
    for k in KS:
        got = np.bincount(caption_image, weights=(t2i < k).astype(np.float64), minlength=n)
        hits.append(np.divide(got, counts, out=np.zeros(n), where=counts > 0))
    hits += [(i2t < k).astype(np.float64) for k in KS]
    return 100.0 * np.mean(hits, axis=0)


@dataclass(frozen=True)
class Verdict:
    better: bool | None  # None: too few judging photos to tell
    gain: float  # mean gain per judging photo, in points of the six-recall mean
    lower: float  # the gain's lower confidence bound (paired bootstrap over photos)
    photos: int  # judging photos
    reason: str  # one sentence for the person

    def as_dict(self) -> dict:
        return asdict(self)


def judge(before: np.ndarray, after: np.ndarray, seed: int = 0) -> Verdict:
    """Compare per-photo scores of the active model (before) and the new one (after) on the
    same judging photos."""
    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    n = len(before)
    diff = after - before
    gain = float(diff.mean()) if n else 0.0
    if n < MIN_JUDGING_PHOTOS:
        return Verdict(None, round(gain, 2), float("nan"), n,
                       f"too few captioned photos to tell whether the new model is better "
                       f"({n} set aside to judge it; at least {MIN_JUDGING_PHOTOS} are needed, "
                       "which takes at least 24 captioned photos)")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(n, size=(RESAMPLES, n))].mean(axis=1)
    lower = float(np.quantile(means, 1 - CONFIDENCE))
    if lower > 0:
        reason = (f"the new model finds the right photos more often: {gain:+.1f} points of mean "
                  f"recall (top 1, 5 and 10, both ways) on {n} photos it was not chosen on (at "
                  f"least {lower:+.1f} with {CONFIDENCE:.1%} confidence)")
    elif gain > 0:
        reason = (f"the new model did better by {gain:+.1f} points of mean recall on {n} photos "
                  "it was not chosen on, which is within chance on that many photos")
    else:
        reason = (f"the new model did not do better on {n} photos it was not chosen on "
                  f"({gain:+.1f} points of mean recall)")
    return Verdict(lower > 0, round(gain, 2), round(lower, 2), n, reason)
