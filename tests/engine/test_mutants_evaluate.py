"""Recall at the edges of the tie rule: a photo's other captions, photos without captions, and
a diverged model, which must score nothing without filling the output with warnings.

Written against the mutants tests/bench/mutation.py found surviving in engine/evaluate.py."""

from __future__ import annotations

import warnings

import numpy as np

from engine.evaluate import recalls


def test_a_photos_weaker_captions_do_not_count_as_ties_with_its_best_one():
    images = np.eye(3, dtype=np.float32)
    # Photo 0 has captions 0, 1 and 2; its best (caption 0) scores 0.9 and so do captions 3
    # and 4, which describe photos 1 and 2: three captions tied for first place, so photo 0's
    # own ranks in the middle of them (rank 1) and it is not found at 1.
    texts = np.array([[0.9, 0.0, 0.0],
                      [0.1, 0.0, 0.0],
                      [0.1, 0.0, 0.0],
                      [0.9, 1.0, 0.0],
                      [0.9, 0.0, 1.0]], dtype=np.float32)
    got = recalls(images, texts, np.array([0, 0, 0, 1, 2]))
    assert got["i2t_r1"] == round(100 * 2 / 3, 2) and got["i2t_r5"] == 100.0


def test_a_photo_without_captions_is_never_found_by_text_and_counts_as_a_miss():
    images = np.eye(3, dtype=np.float32)
    texts = np.eye(3, dtype=np.float32)[:2]  # photo 2 has no caption
    got = recalls(images, texts, np.array([0, 1]))
    assert got["t2i_r1"] == 100.0
    assert got["i2t_r1"] == got["i2t_r10"] == round(100 * 2 / 3, 2)


def test_a_diverged_model_finds_nothing_and_warns_nothing():
    nan = np.full((4, 8), np.nan, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = recalls(nan, nan, np.arange(4))
    assert set(got.values()) == {0.0}
