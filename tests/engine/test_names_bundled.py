"""Named things with the real bundled model on flickr8k-1k: a name given to eight train photos of
dogs in the snow finds the test photos of dogs in the snow, combines with words, is renamed and
deleted, and survives a switch to another model, whose vectors it then uses.

The figures printed here (run with ``-s``) are the ones in the README's "Named things"."""

from __future__ import annotations

import shutil

import pytest

from engine.csvrows import read_image_captions, split_names
from engine.errors import QueryError
from engine.library import Library
from tests.conftest import dataset_images


def _dogs_in_snow(captions: list[str]) -> int:
    """How many of a photo's captions mention a dog and snow."""
    return sum("dog" in c.lower() and "snow" in c.lower() for c in captions)


@pytest.fixture(scope="module")
def snow_dogs(tmp_path_factory):
    """The 200 test photos and the train photos that at least two of their captions call a dog
    in the snow (eight), indexed once with the bundled model; the test photos any caption calls
    one are what the name should find."""
    images = {p.name: p for p in dataset_images()}
    rows = read_image_captions(images[next(iter(images))].parents[1] / "captions.csv")
    captions: dict[str, list[str]] = {}
    for n, t in rows:
        captions.setdefault(n.strip(), []).append(t)
    train = [n for n in split_names(rows, "train") if _dogs_in_snow(captions[n]) >= 2]
    test = split_names(rows, "test")
    wanted = sorted(n for n in test if _dogs_in_snow(captions[n]) >= 1)
    assert len(train) == 8 and len(wanted) >= 3
    base = tmp_path_factory.mktemp("names")
    folder = base / "photos"
    folder.mkdir()
    for n in [*train, *test]:
        shutil.copy2(images[n], folder / n)
    lib = Library.open(base / "library", device="cpu")
    lib.add_folders([folder])
    named = [lib.photo_by_path(folder / n).id for n in train]
    found = [lib.photo_by_path(folder / n).id for n in wanted]
    yield lib, named, found
    lib.close()


def _ranks(lib, query: str, ids: list[int]) -> tuple[list[int], int]:
    """The 1-based ranks of these photos among every photo of the library, and how many."""
    order = [h.photo_id for h in lib.search(query, k=lib.status().photos)]
    return [order.index(i) + 1 for i in ids], len(order)


def test_a_name_finds_other_photos_of_what_it_names(snow_dogs):
    lib, named, found = snow_dogs
    thing = lib.name_photos("Snowdog", named)
    assert thing.photos == 8
    ranks, total = _ranks(lib, "@snowdog", found)
    print(f"\n@snowdog: test photos of dogs in the snow at ranks {ranks} of {total}")
    assert all(r < total / 2 for r in ranks)  # above the library's median, every one
    assert all(r <= total / 4 for r in ranks)  # and in its first quarter
    running = [h.photo_id for h in lib.search('@snowdog + "running"', k=20)]
    assert running != [h.photo_id for h in lib.search("@snowdog", k=20)]


def test_a_name_is_renamed_and_deleted(snow_dogs):
    lib, named, _found = snow_dogs
    lib.name_photos("pup", named[:5])
    before = [h.photo_id for h in lib.search("@pup", k=10)]
    lib.rename_name("PUP", "Puppy")
    assert [h.photo_id for h in lib.search("@puppy", k=10)] == before
    with pytest.raises(QueryError, match="no name @pup in this library"):
        lib.search("@pup")
    lib.delete_name("puppy")
    with pytest.raises(QueryError, match="no name @puppy"):
        lib.search("@puppy")
    assert "Puppy" not in [n.name for n in lib.named_things()]


def test_a_name_survives_a_model_switch_and_uses_the_new_models_vectors(snow_dogs):
    lib, named, found = snow_dogs
    if lib.names.get("snowdog") is None:
        lib.name_photos("snowdog", named)
    first = lib.model.version
    old = [h.photo_id for h in lib.search("@snowdog", k=30)]
    other = "lite0" if lib.image_tower() == "lite1" else "lite1"
    new = lib.upgrade(tower=other)  # re-embeds every photo with the other image tower
    try:
        assert lib.model.version == new != first
        assert lib.names.stored_versions("snowdog") == sorted([first, new])
        now = [h.photo_id for h in lib.search("@snowdog", k=30)]
        together = " + ".join(f"photo:{i}" for i in named)
        assert now == [h.photo_id for h in lib.search(together, k=30)]  # the new vectors
        assert now != old
        ranks, total = _ranks(lib, "@snowdog", found)
        print(f"\n@snowdog after switching to {other}: ranks {ranks} of {total}")
        assert all(r < total / 2 for r in ranks)
    finally:
        lib.activate_model(first)
