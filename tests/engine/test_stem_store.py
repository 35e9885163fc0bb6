"""Training from a store of precomputed tower features (what `chikaku cluster features` makes)
trains exactly the model that computing the features in memory trains; the stems a store lacks
are computed by the training itself; and a store of other towers is refused with the command
that makes the right one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import TrainOptions
from engine.errors import LibraryError
from engine.models import create_model
from engine.training.features import FeatureCache, prepare, views
from engine.training.finetune import open_features, tower_key
from engine.training.loop import Trainer, run
from engine.training.stems import CaptionRows, Rows, StemStore, write_store
from tests.conftest import TINY_MODEL
from tests.engine.test_distributed import _photos

OPTIONS = TrainOptions(steps=12, batch_size=8, lr=0.05, eval_every=4, ema=0.0, seed=5, crops=1)


def _model():
    """The tiny model with locked towers: training caches their features and trains the heads."""
    model = create_model(TINY_MODEL, device="cpu")
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(("image_proj", "text_proj")))
    return model


class _Part:
    def __init__(self, keys: list[str], stems: np.ndarray) -> None:
        self._keys, self._stems = keys, stems

    def keys(self) -> list[str]:
        return self._keys

    def stems(self) -> np.ndarray:
        return self._stems


def _store_of(cache: FeatureCache, folder, tower: str, leave_out: set[str] = frozenset(),
              spoil: float = 1.0) -> StemStore:
    """A store holding the cache's stems (less the keys in ``leave_out``), in two parts a side,
    every stem multiplied by ``spoil``."""
    parts = {}
    for side, first in (("image", "i"), ("text", "t")):
        keys = sorted(k for k in cache.data if k.startswith(first) and k not in leave_out)
        half = len(keys) // 2
        parts[side] = [_Part(ks, np.stack([cache.data[k] * spoil for k in ks]))
                       for ks in (keys[:half], keys[half:])]
    write_store(folder, {"tower": tower}, parts)
    return StemStore.open(folder)


def _train(tmp_path, store: StemStore | None) -> tuple[dict, dict]:
    train, held = _photos(str(tmp_path), 21, 0), _photos(str(tmp_path), 8, 1)
    trainer = Trainer(_model(), train, held, OPTIONS, FeatureCache(None), None, store=store)
    outcome = run(trainer)
    return ({k: v.clone() for k, v in trainer.model.trained_state().items()},
            dict(outcome.after))


@pytest.fixture
def photos(tmp_path):
    _photos(str(tmp_path), 21, 0, write=True)
    _photos(str(tmp_path), 8, 1, write=True)
    cache = FeatureCache(None)
    model = _model()
    for data, flip, crops in ((_photos(str(tmp_path), 21, 0), True, 1),
                              (_photos(str(tmp_path), 8, 1), False, 0)):
        prepare(model, data, cache, flip, crops)
    return cache


def test_a_store_trains_the_model_the_in_memory_features_train(tmp_path, photos):
    weights, recall = _train(tmp_path, None)
    # a store lacking some photos' views and some captions: training makes those itself
    missing = {"i0-3", "i0-7c0f", "i1-2"} | {k for k in list(photos.data)[-5:] if k[0] == "t"}
    store = _store_of(photos, tmp_path / "store", tower_key(_model()), leave_out=missing)
    assert len(store.keys["image"]) == sum(k[0] == "i" for k in photos.data) - 3
    got_weights, got_recall = _train(tmp_path, store)
    assert got_recall == recall
    for name, w in weights.items():
        torch.testing.assert_close(got_weights[name], w, rtol=0, atol=1e-6, msg=name)
    # and the store is what was read: the same store with its stems spoiled trains another model
    spoiled = _store_of(photos, tmp_path / "spoiled", tower_key(_model()), leave_out=missing,
                        spoil=0.5)
    other, _ = _train(tmp_path, spoiled)
    assert not all(torch.allclose(other[n], w, atol=1e-4) for n, w in weights.items())


def test_stems_read_from_a_store_are_the_tensors_they_stand_for(tmp_path, photos):
    model = _model()
    data = _photos(str(tmp_path), 21, 0)
    memory = prepare(model, data, photos, True, 1)
    store = _store_of(photos, tmp_path / "store", tower_key(model), leave_out={"i0-4c0"})
    stored = prepare(model, data, photos, True, 1, store=store)
    assert isinstance(stored.images, Rows) and isinstance(stored.text_stems, CaptionRows)
    assert len(stored.images) == len(memory.images) == len(views(True, 1))
    view, idx = torch.tensor([0, 3, 1, 2]), torch.tensor([4, 4, 20, 0])
    torch.testing.assert_close(stored.images[view, idx], memory.images[view, idx])
    one = stored.images[0]
    assert len(one) == 21
    torch.testing.assert_close(one[3:11], memory.images[0][3:11])
    assert len(stored.text_stems) == 21
    for mine, theirs in zip(stored.text_stems, memory.text_stems, strict=True):
        assert len(mine) == len(theirs) == 2
        for a, b in zip(mine, theirs, strict=True):
            torch.testing.assert_close(a, b)


def test_a_store_of_other_towers_is_refused_with_the_command_that_makes_one(tmp_path, photos):
    _store_of(photos, tmp_path / "job" / "features", "scratch-0000000000000000")
    with pytest.raises(LibraryError, match="other towers.*chikaku cluster features"):
        open_features(tmp_path / "job", _model())
    with pytest.raises(LibraryError, match="no precomputed features.*chikaku cluster features"):
        open_features(tmp_path / "nothing", _model())
    # the right towers: the job's folder or the store's own
    good = _store_of(photos, tmp_path / "good" / "features", tower_key(_model()))
    assert open_features(tmp_path / "good", _model()).path == good.path
    assert open_features(tmp_path / "good" / "features", _model()).path == good.path


def test_a_store_is_replaced_whole_and_keeps_one_row_per_key(tmp_path):
    folder = tmp_path / "store"
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    write_store(folder, {"tower": "x"}, {"image": [_Part(["b", "a"], a[:2]),
                                                   _Part(["a", "c"], a[2:])],
                                         "text": []})
    store = StemStore.open(folder)
    assert [k.decode() for k in store.keys["image"]] == ["a", "b", "c"]
    assert store.rows("image", ["c", "zz", "b", "a" * 40]).tolist() == [2, -1, 1, -1]
    np.testing.assert_array_equal(store.stems["image"][1], a[0])
    write_store(folder, {"tower": "y"}, {"image": [_Part(["q"], a[:1])], "text": []})
    again = StemStore.open(folder)
    assert again.tower == "y" and len(again.keys["image"]) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers
