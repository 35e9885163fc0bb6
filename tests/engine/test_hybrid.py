"""Results you can trust: calibrated scores, likely matches by default, words found by the
full-text index first, and a minus that excludes.

The figures printed here (run with ``-s``) are the ones in the README's "Likely matches"."""

from __future__ import annotations

import csv
import re
import shutil
import sqlite3

import numpy as np
import pytest

from engine.calibration import DEFAULT_THRESHOLD, Calibration, label
from engine.captions import import_csv
from engine.csvrows import read_image_captions, split_names
from engine.errors import QueryError
from engine.library import Library
from engine.query import Term, parse_query
from engine.ranking import MIN_LIKELY, content_words
from tests.conftest import dataset_images

# -- the flickr8k-1k test split, indexed once with the real bundled model ------------------------

_STOP = ("a an the in on at of and with is are to for by from his her their its into near "
         "through while who that this two one three some other over up down out as be it has have")
STOP = set(_STOP.split())
_PEOPLE = ("people person man men woman women boy boys girl girls child children kid kids baby "
           "lady ladies guy guys player players couple crowd family someone he she they skier "
           "surfer biker rider swimmer")
PEOPLE = set(_PEOPLE.split())


@pytest.fixture(scope="session")
def flickr_test(tmp_path_factory):
    """The 200 photos of the test split in a library of their own (no captions), with every
    caption of each photo for judging the results."""
    images = {p.name: p for p in dataset_images()}
    rows = read_image_captions(images[next(iter(images))].parents[1] / "captions.csv")
    names = split_names(rows, "test")
    captions: dict[str, list[str]] = {}
    for n, t in rows:
        if n.strip() in names and t.strip():
            captions.setdefault(n.strip(), []).append(t.strip())
    base = tmp_path_factory.mktemp("flickr-test")
    folder = base / "photos"
    folder.mkdir()
    for n in names:
        shutil.copy2(images[n], folder / n)
    lib = Library.open(base / "library", device="cpu")
    lib.add_folders([folder])
    ids = {n: lib.photo_by_path(folder / n).id for n in names}
    yield lib, folder, names, captions, ids
    lib.close()


def _salient(caps: list[str]) -> set[str]:
    """Words at least two of a photo's captions use."""
    counts: dict[str, int] = {}
    for c in caps:
        for w in set(re.findall(r"[a-z]+", c.lower())) - STOP:
            counts[w] = counts.get(w, 0) + 1
    return {w for w, n in counts.items() if n >= 2}


def test_the_default_results_hold_the_photo_a_held_out_caption_describes(flickr_test):
    lib, _folder, names, captions, ids = flickr_test
    assert lib.calibration().source == "default"  # no captions in this library
    chosen = names[::10]  # 20 photos; each one's last caption is the query, never in the library
    found, sizes, precision = 0, [], []
    for n in chosen:
        hits = lib.search(captions[n][-1])
        got = [h.photo_id for h in hits]
        found += ids[n] in got
        sizes.append(len(hits))
        precision.append((ids[n] in got) / len(hits))
        assert len(hits) >= MIN_LIKELY
        assert all(h.strength >= 0.5 for h in hits[:-MIN_LIKELY] or hits[:0])
    recall, share = found / len(chosen), np.mean(sizes) / len(names)
    print(f"\ntext queries (held-out captions, {len(chosen)}): the photo in the default results "
          f"{recall:.0%}, precision {np.mean(precision):.3f}, {np.mean(sizes):.1f} results "
          f"({share:.1%} of {len(names)} photos)")
    # image queries: photo -> photos sharing at least two words their captions agree on
    salient = {n: _salient(captions[n]) for n in names}
    rec, prec, img_sizes = [], [], []
    for n in chosen:
        relevant = {ids[m] for m in names if m != n and len(salient[n] & salient[m]) >= 2}
        hits = [h for h in lib.search(f"photo:{ids[n]}") if h.photo_id != ids[n]]
        img_sizes.append(len(hits) + 1)
        if relevant:
            got = len(relevant & {h.photo_id for h in hits})
            rec.append(got / len(relevant))
            prec.append(got / max(len(hits), 1))
    img_share = np.mean(img_sizes) / len(names)
    print(f"image queries ({len(rec)} with related photos): recall {np.mean(rec):.3f}, "
          f"precision {np.mean(prec):.3f}, {np.mean(img_sizes):.1f} results ({img_share:.1%})")
    assert recall >= 0.7
    assert share < 0.15
    # the same threshold means the same for both kinds: about the same share of the library
    assert img_share < 0.2


def test_a_raw_cosine_means_different_things_a_strength_does_not(flickr_test):
    lib, _folder, names, captions, ids = flickr_test
    text_top = lib.search(captions[names[0]][-1], k=1)[0]
    image_top = lib.search(f"photo:{ids[names[5]]}", k=2)[1]  # the best photo but itself
    # raw: an image query's best other photo scores far above any text query's best photo
    assert image_top.score > text_top.score + 0.2
    for hit in (text_top, image_top):
        assert 0.0 <= hit.strength <= 1.0
        assert hit.match == label(hit.strength)
        assert hit.match in ("strong", "good", "weak")


def test_a_caption_you_type_finds_its_photo_first(flickr_test):
    lib, _folder, names, _captions, ids = flickr_test
    photo = ids[names[123]]
    caption = "Uncle Bob at the Tour de Yorkshire 2019"
    before = [h.photo_id for h in lib.search(caption, k=len(names))].index(photo)
    assert before > 0  # the model alone does not put it first
    lib.set_captions(photo, [caption])
    try:
        for query in (caption, "Yorkshire", "uncle bob", "tour de yorkshire", "YORKSHIRE 2019"):
            first = lib.search(query)[0]
            assert first.photo_id == photo, query
            assert first.words and first.match == "strong"
    finally:
        lib.set_captions(photo, [])
    assert not lib.search("Yorkshire")[0].words


def test_a_minus_excludes_people_from_the_beach(flickr_test, tmp_path):
    lib, _folder, names, captions, ids = flickr_test
    by_id = {i: n for n, i in ids.items()}

    def with_people(hits) -> float:
        mention = [bool(PEOPLE & {w for c in captions[by_id[h.photo_id]]
                                  for w in re.findall(r"[a-z]+", c.lower())}) for h in hits]
        return float(np.mean(mention)) if mention else 0.0

    def measure(where: str) -> tuple[float, float]:
        plain, without = lib.search("beach"), lib.search("beach -people")
        top_plain, top_without = lib.search("beach", k=20), lib.search("beach -people", k=20)
        print(f"\n{where}: photos whose captions mention people among the likely matches of "
              f"'beach' {with_people(plain):.0%} of {len(plain)}, 'beach -people' "
              f"{with_people(without):.0%} of {len(without)}; in the top 20 "
              f"{with_people(top_plain):.0%} against {with_people(top_without):.0%}")
        assert {h.photo_id for h in top_without} != {h.photo_id for h in top_plain}
        return with_people(plain) - with_people(without), (with_people(top_plain)
                                                           - with_people(top_without))

    measure("meaning alone (no captions)")
    # the weighted subtraction is still there, and excludes nothing
    assert len(lib.search("beach - 0.5*people", k=len(names))) == len(names)
    table = tmp_path / "captions.csv"  # each photo's first four captions, as a person's library
    with open(table, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["image", "caption"])
        out.writerows((n, c) for n in names for c in captions[n][:4])
    import_csv(lib, table)
    try:
        likely_drop, top_drop = measure("captioned library (words and meaning)")
        assert likely_drop >= 0 and top_drop >= 0
        # every photo whose captions say "people" is gone
        said = {ids[n] for n in names if any("people" in c.lower() for c in captions[n][:4])}
        assert not said & {h.photo_id for h in lib.search("beach -people", k=len(names))}
        # captions name people one at a time: take those words away too and they go
        everyone = "beach -people -man -men -woman -women -boy -girl -child -children"
        broad = with_people(lib.search(everyone, k=20))
        print(f"'{everyone}': {broad:.0%} of the top 20")
        assert broad < with_people(lib.search("beach", k=20)) - 0.3
    finally:
        for i in ids.values():
            lib.set_captions(i, [])


# -- words: captions, file names, folders, kept in step --------------------------------------------

@pytest.fixture
def worded(catalog_url, tiny_lib, photos):
    """The 12 photos, two given telling names: one in a folder, one by its file name; the
    catalog in SQLite, then in PostgreSQL."""
    originals = sorted(photos.glob("*.jpg"))
    trip = photos / "Tour de Yorkshire"
    trip.mkdir()
    shutil.move(originals[0], trip / originals[0].name)
    shutil.move(originals[1], photos / "grandmas_birthday_cake.jpg")
    tiny_lib.add_folders([photos])
    return tiny_lib, photos, trip / originals[0].name, photos / "grandmas_birthday_cake.jpg"


def _top(lib, query) -> str:
    return lib.search(query)[0].path


def test_folder_and_file_names_are_searchable(worded):
    lib, _photos, in_trip, cake = worded
    assert _top(lib, "yorkshire") == str(in_trip)
    assert _top(lib, "Birthday cakes") == str(cake)  # stemmed, any case
    assert _top(lib, "grandma's birthday") == str(cake)


def test_captions_from_the_api_and_a_csv_rank_first_at_once(worded, tmp_path):
    lib, photos, _in_trip, _cake = worded
    a, b = sorted(photos.glob("*.jpg"))[2:4]
    lib.set_captions(lib.photo_by_path(a).id, ["a red kayak on the lake"])
    assert _top(lib, "kayak") == str(a)
    assert _top(lib, "red kayaks") == str(a)
    csv = tmp_path / "captions.csv"
    csv.write_text(f"image,caption\n{b.name},Hedgehog asleep in the garden shed\n")
    import_csv(lib, csv)
    assert _top(lib, "hedgehog") == str(b)
    assert lib.search("hedgehog shed")[0].words


def test_a_rename_and_a_deletion_update_the_words(worded):
    lib, photos, _in_trip, cake = worded
    renamed = photos / "wedding_cake.jpg"
    shutil.move(cake, renamed)
    lib.reindex()
    assert _top(lib, "wedding") == str(renamed)
    assert not any(h.words for h in lib.search("grandmas"))
    renamed.unlink()
    lib.reindex()
    assert not any(h.words for h in lib.search("wedding"))


def test_has_requires_the_words_and_minus_has_leaves_them_out(worded):
    lib, photos, in_trip, cake = worded
    lib.set_captions(lib.photo_by_path(cake).id, ["Bob and his cake at the Tour de Yorkshire"])
    assert {h.path for h in lib.search("has:yorkshire")} == {str(in_trip), str(cake)}
    assert [h.path for h in lib.search('has:"tour de yorkshire" + cake')][0] == str(cake)
    assert {h.path for h in lib.search("has:yorkshire bob")} == {str(cake)}
    assert {h.path for h in lib.search("has:yorkshire -has:bob")} == {str(in_trip)}
    assert str(cake) not in {h.path for h in lib.search("cake -has:bob", k=12)}
    assert lib.search("has:nowhere") == []
    with pytest.raises(QueryError, match="only takes photos away"):
        lib.search("-has:bob")


def test_pages_reach_the_whole_library_once(worded):
    lib, _photos, _in_trip, _cake = worded
    first = lib.search("birthday")
    rest = lib.search("birthday", k=100, offset=len(first))
    every = [h.photo_id for h in first + rest]
    assert len(every) == len(set(every)) == 12
    assert lib.search("birthday", k=3, offset=2) == lib.search("birthday", k=5)[2:5]


def test_words_without_the_full_text_index_fall_back_to_like(worded):
    lib, _photos, in_trip, cake = worded
    lib.catalog.has_text_index = False  # as in a catalog kept in another database
    assert _top(lib, "Yorkshire") == str(in_trip)
    assert _top(lib, "birthday") == str(cake)


def test_an_older_catalog_gets_its_word_index_on_open(worded, catalog_url):
    if catalog_url:
        pytest.skip("a SQLite file's upgrade (PostgreSQL's: tests/engine/test_postgres.py)")
    lib, _photos, in_trip, _cake = worded
    root = lib.root
    lib.close()
    con = sqlite3.connect(root / "catalog.db")
    con.executescript("DROP TABLE photo_text; UPDATE meta SET value = '2' "
                      "WHERE key = 'schema_version';")
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        con.execute(f"DROP TRIGGER {name}")
    con.commit()
    con.close()
    again = Library.open(root, device="cpu")
    try:
        assert again.catalog.has_text_index
        assert again.search("yorkshire")[0].path == str(in_trip)
        assert (root / "catalog.db.schema2.bak").exists()
    finally:
        again.close()


# -- the parts ---------------------------------------------------------------------------------

def test_query_syntax_for_words_and_exclusion():
    assert parse_query('beach -people') == [Term(1.0, "text", "beach"),
                                            Term(-1.0, "text", "people", exclude=True)]
    assert parse_query('beach - 0.5*people') == [Term(1.0, "text", "beach"),
                                                 Term(-0.5, "text", "people")]
    assert parse_query('has:"Tour de Yorkshire" bob + cake') == [
        Term(1.0, "words", '"Tour de Yorkshire" bob'), Term(1.0, "text", "cake")]
    assert parse_query("sea -has:boat") == [Term(1.0, "text", "sea"),
                                            Term(-1.0, "words", "boat", exclude=True)]
    for bad, why in (("has:", "needs words"), ("0.5*has:x", "no weight")):
        with pytest.raises(QueryError, match=why):
            parse_query(bad)


def test_content_words_leave_little_words_out():
    assert content_words("A dog at the beach, in the snow") == ["dog", "beach", "snow"]
    assert content_words("the who") == ["the", "who"]


def test_strength_is_half_at_the_threshold_and_rises():
    cal = Calibration("v")
    s = cal.strength(np.array([DEFAULT_THRESHOLD - 1, DEFAULT_THRESHOLD, cal.strong]))
    assert s[0] < 0.5 and s[1] == pytest.approx(0.5) and s[2] == pytest.approx(0.8)
    assert Calibration.from_json(cal.to_json(), "v") == cal
    assert Calibration.from_json(cal.to_json(), "other") is None
    assert Calibration.from_json("{not json", "v") is None


def test_the_command_line_prints_likely_matches_with_their_strength(worded, capsys):
    import json

    from engine.cli import main as cli

    lib, _photos, _in_trip, cake = worded
    where = ["--library", str(lib.root)]
    assert cli(["search", "birthday cake", "--json", *where]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert MIN_LIKELY <= len(hits) < 12  # the likely matches, not every photo
    assert hits[0]["path"] == str(cake) and hits[0]["match"] == "strong" and hits[0]["words"]
    assert all(0 <= h["strength"] <= 1 and isinstance(h["score"], float) for h in hits)
    assert cli(["search", "birthday cake", "--all", "--json", *where]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 12
    assert cli(["search", "birthday cake", "-k", "3", *where]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "strong" in lines[0] and lines[0].rstrip().endswith(cake.name)


def test_a_library_with_captions_is_calibrated_on_them_per_model_version(shapes_lib):
    lib, _folder, _truth = shapes_lib
    cal = lib.calibration()  # made the first time it is needed, on the 48 captioned photos
    assert cal.source == "captions" and cal.pairs == 48 and cal.version == lib.model.version
    assert lib.calibrate() == cal  # the same captions, the same scale
    assert 0.75 <= cal.threshold <= 2.5 and cal.recall is not None
    again = Library.open(lib.root, device="cpu")
    try:
        assert again.calibration() == cal  # kept in the catalog
    finally:
        again.close()


def test_an_inverted_file_scores_every_photo_it_is_given():
    """Large libraries search an inverted file, which looks only in the lists nearest the query:
    the photos found by their words, or checked against an exclusion, are scored all the same."""
    from engine.index import VectorIndex, _ivf_with_ids

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(4000, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(1, 4001, dtype=np.int64)
    idx = VectorIndex(16, "v", use_gpu=False)
    idx._index = _ivf_with_ids(ids, vecs)
    assert idx.kind == "ivf"
    far = ids[np.argsort(vecs @ vecs[0])[:50]]  # the 50 photos farthest from the query
    _, probed = idx.search(vecs[0], 50, far)
    scores, found = idx.search(vecs[0], 50, far, every=True)
    assert sorted(found.tolist()) == sorted(far.tolist()) and len(probed) < 50
    assert np.allclose(np.sort(scores), np.sort(vecs[far - 1] @ vecs[0]), atol=1e-5)
