"""Whether a fine-tuned model replaces the active one: the state kept is the best one on the
selection photos, and the decision is made on other photos, from all six recalls, with a margin
the noise of that many photos justifies; models trained on meaningless captions stay inactive."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import TrainOptions
from engine.evaluate import ranks
from engine.models import create_model
from engine.training.data import CaptionedPhotos, split_photos
from engine.training.decide import MIN_JUDGING_PHOTOS, judge, photo_scores
from engine.training.features import FeatureCache
from engine.training.loop import Trainer, run
from tests.conftest import TINY_MODEL
from tests.engine.conftest import COLOURS, SHAPES, _draw
from tests.events import train_events


def _unit(rows) -> np.ndarray:
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_per_photo_scores_count_all_six_recalls_by_hand():
    # Three photos along the axes; photo 0 has two captions, the others one each.
    images = _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    texts = _unit([[1, 0.1, 0],      # caption 0 -> photo 0: its photo ranks first
                   [0, 1, 0.2],      # caption 1 -> photo 0: photo 0 ranks third (0 similarity)
                   [0.1, 0, 1],      # caption 2 -> photo 1: photo 1 ranks third too
                   [0, 0.3, 1]])     # caption 3 -> photo 2: first
    owner = np.array([0, 0, 1, 2])
    t2i, i2t = ranks(images, texts, owner)
    assert t2i.tolist() == [0, 2, 2, 0]
    # photo 0: caption 0 is its best (rank 0); photo 1: caption 2 scores 0 for it, below
    # captions 0, 1 and 3 (rank 3); photo 2: caption 3 scores 0.96 but caption 2 0.99 (rank 1)
    assert i2t.tolist() == [0, 3, 1]
    scores = photo_scores(images, texts, owner)
    # photo 0: t2i hits at 1/5/10 = 0.5/1/1, i2t = 1/1/1 -> mean 5.5/6
    # photo 1: t2i 0/1/1, i2t 0/1/1 -> 4/6;  photo 2: t2i 1/1/1, i2t 0/1/1 -> 5/6
    assert scores == pytest.approx([100 * 5.5 / 6, 100 * 4 / 6, 100 * 5 / 6])


def test_a_tie_takes_the_middle_place():
    images = _unit([[1, 0], [1, 0], [0, 1]])  # two identical photos
    texts = _unit([[1, 0.5], [1, 0.5], [0, 1]])
    t2i, i2t = ranks(images, texts, np.array([0, 1, 2]))
    assert t2i.tolist() == [0.5, 0.5, 0] and i2t.tolist() == [0.5, 0.5, 0]
    assert photo_scores(images, texts, np.array([0, 1, 2])) == pytest.approx([100] * 3)


def test_a_collapsed_or_diverged_model_is_never_judged_better():
    rng = np.random.default_rng(3)
    images = _unit(rng.normal(size=(30, 8)))
    texts = _unit(images + rng.normal(scale=0.3, size=(30, 8)))  # a decent model
    owner = np.arange(30)
    decent = photo_scores(images, texts, owner)
    for broken in (np.zeros((30, 8)), np.full((30, 8), np.nan)):
        scores = photo_scores(broken, broken, owner)
        assert scores.max() < 50
        assert judge(decent, scores).better is False


def test_a_clear_gain_on_enough_photos_is_better():
    rng = np.random.default_rng(0)
    before = rng.uniform(20, 40, 40)
    v = judge(before, before + rng.uniform(5, 25, 40))
    assert v.better is True and v.lower > 0 and v.photos == 40
    assert "more often" in v.reason


def test_a_small_consistent_loss_is_never_better():
    rng = np.random.default_rng(1)
    before = rng.uniform(20, 60, 60)
    v = judge(before, before - 3 + rng.normal(0, 0.5, 60))  # 3 points worse, everywhere
    assert v.better is False and v.gain < 0


def test_a_gain_within_the_noise_is_not_better():
    rng = np.random.default_rng(2)
    before = rng.uniform(0, 100, 12)
    after = before + rng.normal(0, 30, 12)  # noisy changes whose mean is near zero
    after[0] += 30  # a nudge that makes the mean positive
    v = judge(before, after)
    assert v.gain > 0 and v.better is False
    assert "within chance" in v.reason


def test_too_few_judging_photos_decide_nothing():
    before = np.zeros(MIN_JUDGING_PHOTOS - 1)
    v = judge(before, before + 50)
    assert v.better is None and "too few captioned photos" in v.reason


def test_the_split_sets_aside_enough_photos_to_judge_on_a_small_library():
    data = CaptionedPhotos(list(range(48)), [f"{i}.png" for i in range(48)], ["h"] * 48,
                           [["c"]] * 48)
    split = split_photos(data, 0.1, seed=0)
    sets = [set(split.train.ids), set(split.select.ids), set(split.judge.ids)]
    assert sum(map(len, sets)) == 48 and len(sets[0]) >= 24 and not (sets[0] & sets[1] or sets[0] & sets[2]
                                              or sets[1] & sets[2])
    assert len(split.judge.ids) >= MIN_JUDGING_PHOTOS
    def judging(n: int) -> int:
        d = CaptionedPhotos(list(range(n)), ["p"] * n, ["h"] * n, [["c"]] * n)
        return len(split_photos(d, 0.1, seed=0).judge.ids)

    # the number the verdict and the README give for "enough photos to judge"
    assert judging(24) == MIN_JUDGING_PHOTOS > judging(23)
    big = CaptionedPhotos(list(range(800)), ["p"] * 800, ["h"] * 800, [["c"]] * 800)
    assert len(split_photos(big, 0.1, seed=0).judge.ids) == 40  # 10%, half of it judges


def _shape_photos(folder, n=24) -> CaptionedPhotos:
    rng = np.random.default_rng(0)
    paths, caps = [], []
    for i in range(n):
        colour, shape = list(COLOURS)[i % 4], SHAPES[(i // 4) % 3]
        path = folder / f"{i:03d}.png"
        _draw(COLOURS[colour], shape, rng).save(path)
        paths.append(str(path))
        caps.append([f"a {colour} {shape}"])
    return CaptionedPhotos(list(range(n)), paths, [f"h{i}" for i in range(n)], caps)


def test_the_state_kept_is_the_best_one_on_the_selection_photos_not_the_last(tmp_path):
    data = _shape_photos(tmp_path)
    model = create_model(TINY_MODEL, device="cpu")
    opt = TrainOptions(steps=50, batch_size=8, eval_every=10, patience=10, ema=0)
    trainer = Trainer(model, data.subset(range(16)), data.subset(range(16, 24)), opt,
                      FeatureCache(None), None)
    scripted = iter([10.0, 20.0, 60.0, 30.0, 40.0, 50.0])  # before, then five evaluations
    seen = []

    def held_recall(_prep):
        value = next(scripted)
        seen.append((value, {k: v.clone() for k, v in model.trained_state().items()}))
        return dict.fromkeys(("t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10"),
                             value)

    trainer.held_recall = held_recall
    outcome = run(trainer)
    assert outcome.after["t2i_r1"] == 60.0
    best = dict(seen)[60.0]
    kept = model.trained_state()
    assert all(np.allclose(kept[k].numpy(), best[k].numpy()) for k in best)
    last = dict(seen)[50.0]
    assert not all(np.allclose(kept[k].numpy(), last[k].numpy()) for k in last)


@pytest.mark.parametrize("caption_seed", [0, 1, 2])
def test_models_trained_on_meaningless_captions_are_not_activated(shapes_lib, caption_seed):
    lib, folder, _ = shapes_lib
    active = lib.model.version
    rng = np.random.default_rng(100 + caption_seed)
    for p in sorted(folder.iterdir()):
        words = ["".join(rng.choice(list("bcdfghjklmnpqrstvwxz"), 6)) for _ in range(3)]
        lib.set_captions(lib.photo_by_path(p).id, [" ".join(words)])
    for seed in (0, 1):
        events = train_events(lib, TrainOptions(steps=60, batch_size=32, lr=3e-3, holdout=0.25,
                                             eval_every=10, patience=10, seed=seed))
        result = events[-1].result
        assert not result.improved and not result.activated, result.verdict
        assert lib.active_model_record().version == active
