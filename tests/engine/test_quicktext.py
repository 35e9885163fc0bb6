"""A text query answered before the model has loaded: the bundled model's text side in NumPy
(engine.models.quicktext) gives the model's own vectors, and a library opened in a fresh process
answers words without importing PyTorch, with the ranking the whole model gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.models import create_model, save_checkpoint
from engine.models.quicktext import QuickText
from engine.models.recipe import default_config

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["a dog running through the snow", "  two children on a red slide  ", "x",
         "café crème brûlée 東京 ünïcode", "a " * 400]  # the last one is cut at 256 tokens

# Run in a fresh interpreter: PyTorch and the model libraries cannot be imported at all, so a
# search that needed them fails loudly instead of loading them quietly.
NO_TORCH = """
import json, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "timm", "transformers", "sentence_transformers"):
            raise ImportError("the first search must not need " + name)
sys.meta_path.insert(0, Refuse())
from engine.library import Library
lib = Library.open(sys.argv[1], device="cpu")
lib.warm_up()
hits = lib.search(sys.argv[2], k=10)
print(json.dumps({"paths": [h.path for h in hits], "scores": [h.score for h in hits],
                  "torch": "torch" in sys.modules}))
"""


@pytest.mark.slow
def test_the_base_models_text_vectors_are_the_models_own():
    model = create_model(default_config(), device="cpu")
    quick = QuickText.for_model(model.version, model.config(), None)
    want, got = model.encode_texts(TEXTS), quick.encode_texts(TEXTS)
    assert got.shape == want.shape == (len(TEXTS), 384)
    assert np.abs(got - want).max() < 1e-5
    assert quick.encode_texts([]).shape == (0, 384)


@pytest.mark.slow
def test_a_tuned_versions_text_head_and_unlocked_layer_come_from_its_checkpoint(tmp_path):
    import torch

    model = create_model({**default_config(), "unlock_text": 1}, device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # as a fine-tune leaves them: a head and the last layer changed
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    model.forget_version()
    folder = save_checkpoint(model, tmp_path / "tuned")
    quick = QuickText.for_model(model.version, model.config(), folder)
    base = QuickText.for_model("base", default_config(), None)
    want = model.encode_texts(TEXTS)
    assert np.abs(quick.encode_texts(TEXTS) - want).max() < 1e-5
    assert np.abs(base.encode_texts(TEXTS) - want).max() > 1e-2  # the tuning shows


def test_only_the_bundled_family_has_a_quick_text_side():
    assert QuickText.for_model("scratch-1", {"family": "scratch", "dim": 32}, None) is None


@pytest.mark.slow
def test_a_fresh_start_answers_words_without_loading_pytorch(bundled_library):
    lib, _folder = bundled_library
    query = "a dog running through the snow"
    run = subprocess.run([sys.executable, "-c", NO_TORCH, str(lib.root), query], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    quick = json.loads(run.stdout.strip().splitlines()[-1])
    assert quick["torch"] is False
    lib.load_model()
    whole = lib.search(query, k=10)
    assert quick["paths"] == [h.path for h in whole]
    assert np.allclose(quick["scores"], [h.score for h in whole], atol=1e-4)


def test_before_the_model_loads_an_image_query_waits_for_it_and_is_answered(tiny_lib, photos):
    tiny_lib.add_folders([photos])
    tiny_lib._model = None  # as just after a start
    tiny_lib.warm_up()
    first = next(iter(sorted(photos.iterdir())))
    hits = tiny_lib.search(image=first, k=3)
    assert Path(hits[0].path).name == first.name


def test_while_the_model_loads_the_index_and_a_folder_removal_do_not_lock_up(tiny_lib, photos,
                                                                             tmp_path):
    """A model load takes seconds; the library's other work waits for it at most, never
    forever (a load takes its lock and then the library's, so no caller may hold the library's
    lock while it asks for the model)."""
    import threading
    import time

    other = tmp_path / "other"
    other.mkdir()
    first = sorted(photos.iterdir())[0]
    (other / first.name).write_bytes(first.read_bytes())
    tiny_lib.add_folders([photos, other])
    real_load = tiny_lib.registry.load

    def slow_load(rec, device):
        time.sleep(1.0)
        return real_load(rec, device)

    tiny_lib.registry.load = slow_load
    tiny_lib._model = None
    errors: list[BaseException] = []

    def run(fn):
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    jobs = [threading.Thread(target=run, args=(lambda: tiny_lib.model,)),
            threading.Thread(target=run, args=(lambda: tiny_lib.index,)),
            threading.Thread(target=run, args=(lambda: tiny_lib.remove_folder(other),))]
    for t in jobs:
        t.start()
        time.sleep(0.1)
    for t in jobs:
        t.join(30)
    assert not any(t.is_alive() for t in jobs), "a thread is stuck waiting on the model's load"
    assert errors == []
    assert str(other) not in tiny_lib.folders()
