"""The activation verdict at its edges: exactly enough photos, no change at all, a small but
sure gain, the figures and the sentence a person reads, and photos without captions.

Written against the mutants tests/bench/mutation.py found surviving in engine/decide.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.training.decide import MIN_JUDGING_PHOTOS, judge, photo_scores


def test_exactly_the_minimum_of_judging_photos_gives_a_verdict():
    before = np.full(MIN_JUDGING_PHOTOS, 30.0)
    v = judge(before, before + 10)
    assert v.better is True and v.photos == MIN_JUDGING_PHOTOS


def test_too_few_photos_still_report_the_gain_and_how_many_photos():
    v = judge([10.0, 20.0, 30.0], [11.0, 21.5, 31.0])  # +1, +1.5, +1: a mean of 1.1666...
    assert v.better is None and v.gain == 1.17 and v.photos == 3 and math.isnan(v.lower)
    assert v.reason == ("too few captioned photos to tell whether the new model is better "
                        "(3 set aside to judge it; at least 10 are needed, which takes at least "
                        "24 captioned photos)")
    nothing = judge([], [])
    assert nothing.better is None and nothing.gain == 0.0 and nothing.photos == 0


def test_a_model_that_changes_nothing_is_not_better():
    before = np.random.default_rng(4).uniform(0, 100, 30)
    v = judge(before, before.copy())
    assert v.better is False and v.gain == 0 and v.lower == 0
    assert v.reason == "the new model did not do better on 30 photos it was not chosen on " \
                       "(+0.0 points of mean recall)"


def test_gains_and_losses_that_cancel_out_are_not_called_a_gain():
    before = np.full(20, 50.0)
    after = before + np.tile([10.0, -10.0], 10)  # mean gain exactly zero
    v = judge(before, after)
    assert v.better is False and v.gain == 0
    assert v.reason.startswith("the new model did not do better on 20 photos")


def test_a_small_but_sure_gain_is_better_and_its_figures_are_rounded_to_hundredths():
    before = np.full(30, 40.0)
    v = judge(before, before + 1 / 3)  # a third of a point better on every photo
    assert v.better is True and v.gain == 0.33 and v.lower == 0.33
    assert v.reason == ("the new model finds the right photos more often: +0.3 points of mean "
                        "recall (top 1, 5 and 10, both ways) on 30 photos it was not chosen on "
                        "(at least +0.3 with 97.5% confidence)")


def test_a_small_gain_within_the_noise_is_said_to_be_within_chance():
    rng = np.random.default_rng(5)
    before = rng.uniform(20, 80, 16)
    noise = rng.normal(0, 20, 16)
    after = before + noise - noise.mean() + 0.5  # a mean gain of half a point, in much noise
    v = judge(before, after)
    assert v.better is False and v.gain == 0.5
    assert v.reason == ("the new model did better by +0.5 points of mean recall on 16 photos "
                        "it was not chosen on, which is within chance on that many photos")


def test_the_same_scores_always_give_the_same_verdict():
    rng = np.random.default_rng(6)
    before = rng.uniform(0, 100, 25)
    after = before + rng.normal(2, 15, 25)
    first = judge(before, after)
    assert all(judge(before, after) == first for _ in range(3))


def test_a_caption_whose_photo_comes_second_is_a_hit_at_five_not_at_one():
    images = np.eye(3, dtype=np.float32)
    texts = np.array([[0.5, 0.9, 0.0],   # caption 0 -> photo 0: photo 1 above it (rank 1)
                      [0.0, 1.0, 0.0],   # caption 1 -> photo 1: first
                      [0.0, 0.0, 1.0]],  # caption 2 -> photo 2: first
                     dtype=np.float32)
    scores = photo_scores(images, texts, np.array([0, 1, 2]))
    # photo 0: t2i misses at 1, hits at 5 and 10; i2t: caption 0 is its best (only) caption and
    # nothing scores higher for photo 0, so 3 of 3 -> 5/6
    assert scores == pytest.approx([100 * 5 / 6, 100, 100])


def test_a_photo_without_captions_scores_zero_and_keeps_its_place():
    images = np.eye(4, dtype=np.float32)
    texts = np.eye(4, dtype=np.float32)[:3]  # captions for photos 0 to 2; photo 3 has none
    scores = photo_scores(images, texts, np.array([0, 1, 2]))
    assert scores.tolist() == [100.0, 100.0, 100.0, 0.0]
