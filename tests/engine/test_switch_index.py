"""The index a model switch leaves behind is the one the library would build itself: on the CPU
when the library is set to the CPU, and the approximate (IVF) index when the library is large."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import engine.index
from engine.library import Library
from tests.conftest import TINY_MODEL

OTHER_MODEL = {**TINY_MODEL, "seed": 7}


def _photos(folder, n: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(
            folder / f"{i:03d}.png")


def test_a_model_switch_on_a_cpu_library_keeps_faiss_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(engine.index, "gpu_available", lambda: True)  # as on a machine with one
    _photos(tmp_path / "photos", 6)
    lib = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    lib.add_folders([tmp_path / "photos"])
    assert lib.index.use_gpu is False
    new = lib.add_model(OTHER_MODEL, activate=True)
    assert lib.active_model_record().version == new
    assert lib.index.version == new and lib.index.use_gpu is False
    lib.close()


def test_a_large_library_gets_its_ivf_index_after_a_model_switch(tmp_path, monkeypatch):
    monkeypatch.setattr(engine.index, "IVF_THRESHOLD", 64)  # "large", without 200,000 photos
    _photos(tmp_path / "photos", 70)
    lib = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    lib.add_folders([tmp_path / "photos"])
    new = lib.add_model(OTHER_MODEL, activate=True)
    idx = lib.index
    assert (idx.version, idx.kind, len(idx)) == (new, "ivf", 70)
    photo = tmp_path / "photos" / "041.png"
    assert lib.search(image=photo, k=1)[0].path == str(photo)
    lib.close()
    again = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    assert (again.index.version, again.index.kind) == (new, "ivf")  # the saved index is IVF
    again.close()


@pytest.mark.parametrize("start", ["fresh", "earlier index file"])
def test_switching_back_uses_a_current_index_for_that_model(tmp_path, start):
    _photos(tmp_path / "photos", 8)
    lib = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    lib.add_folders([tmp_path / "photos"])
    first = lib.active_model_record().version
    if start == "earlier index file":
        lib.add_model(OTHER_MODEL, activate=True)
        _photos(tmp_path / "more", 3)
        lib.add_folders([tmp_path / "more"])  # the first model's saved index is now stale
    else:
        lib.add_model(OTHER_MODEL, activate=False)
    lib.activate_model(first)
    expected = 11 if start == "earlier index file" else 8
    assert (lib.index.version, len(lib.index)) == (first, expected)
    lib.close()
