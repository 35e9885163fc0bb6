"""The zero-shot recipe is part of the model version: a library indexed with the first recipe keeps
working unchanged, is told a better base model is available, upgrades to it with no photo lost
while search keeps the old vectors, and rolls back with no re-embedding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.cli import main as cli
from engine.errors import LibraryError
from engine.models import create_model, default_config
from engine.models.bundled import (
    RECIPE,
    BundledDualEncoder,
    _prompt_cache_path,
    class_prompts,
    upgraded_config,
)
from tests.conftest import KNOWN_QUERIES, dataset_images

# What every bundled model made before there was a recipe to choose recorded (and its version).
OLD_CONFIG = {"family": "bundled", "temperature": 1.0, "image_tower": "tf_efficientnet_lite0",
              "text_tower": "all-MiniLM-L6-v2"}
OLD_VERSION = "bundled-59902b9c57e9"


def test_a_config_without_the_recipe_keys_is_the_old_model_to_the_bit():
    old = create_model(OLD_CONFIG, device="cpu")
    assert old.config() == OLD_CONFIG
    assert old.version == OLD_VERSION  # its vectors in existing libraries stay its own
    assert (old.prompts, old.centre, old.temperature) == ("names", False, 1.0)


def test_new_libraries_get_the_chosen_recipe_recorded_in_the_config():
    config = default_config("bundled")
    assert {k: config[k] for k in RECIPE} == RECIPE
    model = create_model(config, device="cpu")
    assert {k: model.config()[k] for k in RECIPE} == RECIPE
    assert model.version != OLD_VERSION
    # centred: the prompts' mean is taken away
    assert float(model.class_text.mean(0).abs().max()) < 1e-6


def test_each_recipe_has_its_own_prompt_cache_file():
    names, gloss = class_prompts("names"), class_prompts("gloss")
    assert names[207] == "a photo of a golden retriever"
    assert gloss[207] == "golden retriever: an English breed having a long silky golden coat"
    assert _prompt_cache_path(names) != _prompt_cache_path(gloss)


def test_an_upgrade_keeps_a_chosen_tower_and_gives_the_first_recipe_the_default():
    """Libraries of the first recipe never chose their tower (Lite0 was all there was)."""
    assert upgraded_config(OLD_CONFIG) == default_config("bundled")
    assert upgraded_config(OLD_CONFIG, "lite0")["image_tower"] == "tf_efficientnet_lite0"
    assert upgraded_config(OLD_CONFIG, "lite1")["image_tower"] == "tf_efficientnet_lite1"
    current = default_config("bundled")
    assert upgraded_config(current) is None
    other = "lite1" if current["image_tower"].endswith("lite0") else "lite0"
    assert upgraded_config(current, other) is not None


def test_other_families_are_offered_no_upgrade(tiny_lib, capsys):
    assert tiny_lib.upgrade_available() is None and tiny_lib.image_tower() is None
    with pytest.raises(LibraryError, match="upgrades are for the bundled model"):
        tiny_lib.upgrade()


@pytest.fixture(scope="module")
def old_library(tmp_path_factory):
    """A library indexed with the first recipe over 20 photos, the known ones included."""
    from engine.library import Library

    base = tmp_path_factory.mktemp("old-recipe")
    folder = base / "photos"
    folder.mkdir()
    for p in dataset_images()[:16]:
        shutil.copy2(p, folder / p.name)
    for name in KNOWN_QUERIES:
        shutil.copy2(dataset_images()[0].parent / name, folder / name)
    lib = Library.open(base / "library", device="cpu", default_model=OLD_CONFIG)
    lib.add_folders([folder])
    lib.close()
    return base


def _top(lib, caption: str) -> str:
    return Path(lib.search(caption, k=3)[0].path).name


def test_an_old_library_opens_searches_upgrades_and_rolls_back(old_library, monkeypatch, capsys):
    from engine.library import Library

    lib = Library.open(old_library / "library", device="cpu")  # opened by this version
    assert lib.active_model_record().version == OLD_VERSION
    photos = lib.status().photos
    assert photos == 20 and lib.status().embedded == 20
    before = {c: _top(lib, c) for c in KNOWN_QUERIES.values()}
    assert lib.upgrade_available() and "WordNet" in lib.upgrade_available()
    assert lib.image_tower() == "lite0"

    assert cli(["status", "--library", str(old_library / "library")]) == 0
    assert "upgrade:  available (chikaku models upgrade)" in capsys.readouterr().out

    new = lib.upgrade()
    assert new is not None and new != OLD_VERSION
    st = lib.status()
    assert (st.model_version, st.photos, st.embedded) == (new, 20, 20)  # no photo lost
    assert lib.upgrade_available() is None
    for name, caption in KNOWN_QUERIES.items():
        assert _top(lib, caption) == name, caption
    assert lib.previous_model() == OLD_VERSION  # the old version stays, as the new one's parent
    assert {m.version: m.title for m in lib.models()} == {
        OLD_VERSION: "Base model (earlier zero-shot recipe)",
        new: "Base model (better image model)"}  # told apart where a person picks one

    # Rolling back needs no model to embed anything: the old version's vectors were kept.
    def no_embedding(*_a, **_k):
        raise AssertionError("rolling back re-embedded photos")

    monkeypatch.setattr(BundledDualEncoder, "encode_images", no_embedding)
    assert cli(["models", "activate", OLD_VERSION, "--library",
                str(old_library / "library")]) == 0
    monkeypatch.undo()
    lib.close()
    lib = Library.open(old_library / "library", device="cpu")
    st = lib.status()
    assert (st.model_version, st.photos, st.embedded) == (OLD_VERSION, 20, 20)
    assert {c: _top(lib, c) for c in KNOWN_QUERIES.values()} == before
    assert lib.upgrade_available()  # offered again
    capsys.readouterr()
    assert cli(["models", "--library", str(old_library / "library")]) == 0
    assert "a better base model is available" in capsys.readouterr().out

    # Upgrading again finds the new version's vectors kept too: nothing is embedded.
    monkeypatch.setattr(BundledDualEncoder, "encode_images", no_embedding)
    assert cli(["models", "upgrade", "--library", str(old_library / "library"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"version": new, "previous": OLD_VERSION,
                                                   "changed": True}
    lib.close()


def test_a_fine_tuned_old_model_is_not_replaced_by_a_base_model(tiny_lib, monkeypatch):
    """A trained bundled model (a checkpoint) searches better than any base model until trained
    again: no upgrade is offered, and asking says what to do instead."""
    from types import SimpleNamespace

    rec = SimpleNamespace(version="bundled-000000000000", family="bundled", path="models/x",
                          config_json=json.dumps(OLD_CONFIG), active=True)
    monkeypatch.setattr(tiny_lib.registry, "active", lambda: rec)
    assert tiny_lib.upgrade_available() is None and tiny_lib.image_tower() is None
    with pytest.raises(LibraryError, match="fine-tuned on your captions"):
        tiny_lib.upgrade()


def test_the_image_tower_is_chosen_on_creation_and_changed_by_an_upgrade(tmp_path, capsys):
    """A person on a slow machine can pick the faster tower, and change their mind later."""
    from engine.library import Library

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in dataset_images()[:3]:
        shutil.copy2(p, folder / p.name)
    lib_dir = str(tmp_path / "lib")
    assert cli(["index", str(folder), "--quiet", "--tower", "lite1", "--library", lib_dir]) == 0

    def active_config() -> dict:
        lib = Library.open(lib_dir, device="cpu")
        try:
            return json.loads(lib.active_model_record().config_json)
        finally:
            lib.close()

    assert active_config()["image_tower"] == "tf_efficientnet_lite1"
    capsys.readouterr()
    assert cli(["models", "upgrade", "--library", lib_dir]) == 0
    assert "already the current bundled model; nothing to do" in capsys.readouterr().out
    assert cli(["models", "upgrade", "--tower", "lite0", "--library", lib_dir]) == 0
    assert "chikaku models back" in capsys.readouterr().out
    config = active_config()
    assert config["image_tower"] == "tf_efficientnet_lite0" and config["prompts"] == "gloss"
    assert cli(["models", "back", "--library", lib_dir]) == 0
    assert active_config()["image_tower"] == "tf_efficientnet_lite1"
    # --tower names a new library's tower; an existing library is told how to change its own
    assert cli(["index", "--quiet", "--tower", "lite0", "--library", lib_dir]) == 0
    assert "chikaku models upgrade --tower lite0" in capsys.readouterr().err
