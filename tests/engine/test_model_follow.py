"""A library kept open for hours (a running `chikaku watch`, the desktop app) follows a model
switch made by another process: new photos are embedded by the model that is active now, and
found by search through either process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sqlalchemy import select

from engine.catalog import Embedding
from engine.library import Library
from engine.watching.watcher import Watcher, WatchOptions
from tests.conftest import TINY_MODEL
from tests.engine.test_watcher import wait_for

OTHER_MODEL = {**TINY_MODEL, "seed": 11}
FAST = WatchOptions(quiet=0.3, settle=0.2, poll_interval=0.3, recheck=0.3)


def _photo(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (48, 48), tuple(int(v) for v in rng.integers(0, 255, 3)))
    d = ImageDraw.Draw(im)
    for _ in range(4):
        x, y = (int(v) for v in rng.integers(0, 40, 2))
        d.rectangle((x, y, x + 8, y + 8), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    im.save(path)


@pytest.fixture
def folder(tmp_path) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        _photo(photos / f"{i}.png", i)
    return photos


def _embedded_by(lib: Library, path: Path) -> set[str]:
    photo = lib.photo_by_path(path)
    assert photo is not None, f"{path.name} is not in the catalog"
    with lib.catalog.session() as s:
        return set(s.scalars(select(Embedding.model_version)
                             .where(Embedding.photo_id == photo.id)))


def _first_hit(lib: Library, image: Path) -> str:
    return Path(lib.search(image=image, k=1)[0].path).name


def _switch_elsewhere(tmp_path: Path) -> str:
    """Another process's `chikaku models add/activate`: its own Library on the same folder."""
    other = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    try:
        return other.add_model(OTHER_MODEL, activate=True)
    finally:
        other.close()


def test_a_library_kept_open_embeds_new_photos_with_the_model_activated_elsewhere(tmp_path,
                                                                                 folder):
    watcher_side = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    watcher_side.add_folders([folder])
    old = watcher_side.active_model_record().version
    assert _first_hit(watcher_side, folder / "3.png") == "3.png"  # the old model is loaded

    new = _switch_elsewhere(tmp_path)
    assert new != old

    _photo(folder / "new.png", 100)
    report = watcher_side.add_folders([folder])  # the watcher's next pass
    assert report.added == 1
    assert new in _embedded_by(watcher_side, folder / "new.png")

    status = watcher_side.status()
    assert (status.model_version, status.photos, status.embedded) == (new, 7, 7)
    assert _first_hit(watcher_side, folder / "new.png") == "new.png"
    reader = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    assert reader.status().embedded == 7
    assert _first_hit(reader, folder / "new.png") == "new.png"
    assert len(reader.search("a photo", k=20)) == 7
    reader.close()
    watcher_side.close()


def test_search_in_a_library_kept_open_uses_the_model_activated_elsewhere(tmp_path, folder):
    app_side = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    app_side.add_folders([folder])
    app_side.search("a photo", k=1)
    new = _switch_elsewhere(tmp_path)
    assert app_side.model.version == new
    hits = app_side.search("a photo", k=20)
    assert len(hits) == 6
    assert _first_hit(app_side, folder / "2.png") == "2.png"
    app_side.close()


def test_a_running_watcher_follows_a_model_switch(tmp_path, folder):
    lib = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    lib.add_folders([folder])
    with Watcher(lib, options=FAST, polling=True) as watcher:
        wait_for(lambda: watcher.idle, "the first pass")
        new = _switch_elsewhere(tmp_path)
        _photo(folder / "new.png", 100)
        wait_for(lambda: lib.photo_by_path(folder / "new.png") is not None and watcher.idle,
              "the new photo to be indexed")
    assert new in _embedded_by(lib, folder / "new.png")
    status = lib.status()
    assert (status.model_version, status.photos, status.embedded) == (new, 7, 7)
    assert _first_hit(lib, folder / "new.png") == "new.png"
    lib.close()


