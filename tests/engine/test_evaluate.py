"""Recall@K, the number behind every quality figure and every activation, against examples
worked out by hand (ties included: a tie takes the middle of the tied places)."""

from __future__ import annotations

import numpy as np

from engine.evaluate import recalls

# Seven photos along the axes, so that each caption's row below is its similarity to each photo.
# Caption i describes photo i.
PHOTOS = np.eye(7, dtype=np.float32)
CAPTIONS = np.array([
    # p0   p1   p2   p3   p4   p5   p6      text->image rank of its own photo
    [0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.5],  # 0: first
    [0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.5],  # 1: second (photo 0 above)
    [0.5, 0.5, 0.5, 0.2, 0.2, 0.2, 0.2],  # 1: tied with photos 0 and 1 (places 0 to 2)
    [0.6, 0.6, 0.6, 0.4, 0.6, 0.6, 0.1],  # 5: five photos above
    [0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3],  # 3: everything tied (places 0 to 6)
    [0.1, 0.1, 0.1, 0.1, 0.1, 0.8, 0.6],  # 0
    [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2],  # 0
], dtype=np.float32)
# Image -> text, down each column: photos 0, 1, 3 and 5 find their caption first; photo 2 has
# caption 3 above its own (rank 1), photo 4 too (rank 1); photo 6's own caption scores 0.2 and
# captions 0, 1, 4 and 5 score more and caption 2 ties with it (rank 4.5).


def test_recall_at_k_by_hand_with_ties():
    got = recalls(PHOTOS, CAPTIONS, np.arange(7))
    # text->image ranks 0 1 1 5 3 0 0: 3 of 7 within the top 1, 6 within the top 5, 7 in 10
    # image->text ranks 0 0 1 0 1 0 4.5: 4 of 7 within the top 1, all 7 within the top 5
    assert got == {"t2i_r1": 42.86, "t2i_r5": 85.71, "t2i_r10": 100.0,
                   "i2t_r1": 57.14, "i2t_r5": 100.0, "i2t_r10": 100.0}


def test_a_photo_is_found_by_any_of_its_captions():
    photos = np.eye(3, dtype=np.float32)
    captions = np.array([
        [0.1, 0.6, 0.2],  # photo 0, badly described: rank 2
        [0.9, 0.1, 0.1],  # photo 0, well described: rank 0
        [0.3, 0.4, 0.5],  # photo 1: rank 1
        [0.2, 0.2, 0.7],  # photo 2: rank 0
        [0.2, 0.3, 0.1],  # photo 2: rank 2
    ], dtype=np.float32)
    got = recalls(photos, captions, np.array([0, 0, 1, 2, 2]))
    # text->image: 2 of 5 first; image->text: photo 0 through its second caption and photo 2
    # through its first are first, photo 1 is beaten by caption 0 (0.6 against 0.4)
    assert (got["t2i_r1"], got["t2i_r5"], got["i2t_r1"], got["i2t_r5"]) == (40.0, 100.0,
                                                                              66.67, 100.0)


def test_identical_photos_both_count_as_found():
    photos = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)  # a copy of the same photo
    captions = np.array([[0.8, 0.6], [0.8, 0.6], [0, 1]], dtype=np.float32)
    got = recalls(photos, captions, np.arange(3))
    assert got["t2i_r1"] == 100.0 and got["i2t_r1"] == 100.0


def test_a_model_that_diverged_finds_nothing():
    """Vectors that are not numbers (a fine-tune gone wrong) must score 0, not 100."""
    photos = np.full((5, 4), np.nan, dtype=np.float32)
    captions = np.full((10, 4), np.nan, dtype=np.float32)
    got = recalls(photos, captions, np.repeat(np.arange(5), 2))
    assert set(got.values()) == {0.0}


def test_a_model_that_maps_everything_to_one_point_finds_nothing_first():
    """A collapsed model (every vector the same) ties everything: middle places, not first."""
    photos = np.zeros((20, 4), dtype=np.float32)
    captions = np.zeros((40, 4), dtype=np.float32)
    got = recalls(photos, captions, np.repeat(np.arange(20), 2))
    assert got["t2i_r1"] == got["i2t_r1"] == got["t2i_r5"] == 0.0
