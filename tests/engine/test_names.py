"""Named things with a tiny model: @name in queries, the names' rules and messages, the command
line, captions, and photos leaving a name."""

from __future__ import annotations

import numpy as np
import pytest

from engine.cli import main as cli
from engine.errors import LibraryError, QueryError
from engine.query import parse_query
from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.usefixtures("catalog_url")  # each test on SQLite and on PostgreSQL


@pytest.fixture
def lib(tiny_lib, photos):
    tiny_lib.add_folders([photos])
    return tiny_lib


def _ids(lib, photos, n=3, start=0):
    return [lib.photo_by_path(p).id for p in sorted(photos.iterdir())[start : start + n]]


def test_a_name_is_a_query_term_that_composes():
    assert parse_query("@mia") == parse_query("1*@mia")
    mia, words = parse_query('@mia + "red slide"')
    assert (mia.kind, mia.value, words.kind, words.value) == ("name", "mia", "text", "red slide")
    (weighted, excluded) = parse_query("0.5*@mia -@rex")
    assert (weighted.weight, excluded.kind, excluded.exclude) == (0.5, "name", True)
    assert parse_query('"@mia"')[0].kind == "text"  # quoted: the words themselves
    assert parse_query("dogs @ the park")[0].kind == "text"
    with pytest.raises(QueryError, match=r"a name is one word.*@mia \+ red slide"):
        parse_query("@mia red slide")


def test_named_photos_are_found_by_their_name(lib, photos):
    ids = _ids(lib, photos)
    named = lib.name_photos("mia", ids)
    assert (named.name, named.photos, named.in_captions) == ("mia", 3, False)
    by_name = [h.photo_id for h in lib.search("@mia", k=12)]
    # the name's vector is its photos' centre: the same ranking as the sum of the photos
    together = [h.photo_id for h in lib.search(" + ".join(f"photo:{i}" for i in ids), k=12)]
    assert by_name == together
    combined = [h.photo_id for h in lib.search('@mia + "a dog in the snow"', k=12)]
    assert combined != by_name
    assert lib.search("a dog -@mia", k=12)  # a name excludes as any term does
    with pytest.raises(QueryError, match="cancel each other out"):
        lib.search("@mia -@mia")


def test_an_unknown_name_says_which_names_there_are(lib, photos, capsys):
    with pytest.raises(QueryError, match="no names yet"):
        lib.search("@mia")
    lib.name_photos("mia", _ids(lib, photos))
    lib.name_photos("Rex", _ids(lib, photos, start=5))
    with pytest.raises(QueryError, match=r"no name @bob in this library: the names are @mia, "
                                         r"@Rex"):
        lib.search("@bob + beach")
    assert cli(["search", "--library", str(lib.root), "@bob"]) == 1
    err = capsys.readouterr().err
    assert "no name @bob" in err and "@mia, @Rex" in err and "Traceback" not in err


def test_names_are_case_insensitive(lib, photos):
    first, more = _ids(lib, photos, 2), _ids(lib, photos, 2, start=4)
    lib.name_photos("Mia", first)
    again = lib.name_photos("MIA", more)  # the same name: the photos are added to it
    assert (again.name, again.photos) == ("Mia", 4)
    assert [n.name for n in lib.named_things()] == ["Mia"]
    assert [h.photo_id for h in lib.search("@mia", k=5)] == \
        [h.photo_id for h in lib.search("@MIA", k=5)]
    renamed = lib.rename_name("mIA", "mia")  # another spelling of itself
    assert renamed.name == "mia"
    lib.name_photos("rex", more)
    with pytest.raises(LibraryError, match="already a name @rex"):
        lib.rename_name("mia", "REX")


def test_a_name_needs_photos_of_the_library(lib, photos, tmp_path):
    with pytest.raises(LibraryError, match="at least one photo"):
        lib.name_photos("mia", [])
    with pytest.raises(LibraryError, match=r"not saved.*1 not in the library \(ids 999999\)"):
        lib.name_photos("mia", [*_ids(lib, photos), 999999])
    for bad in ("", "@", "red car", "mia!", "x" * 41, "_mia"):
        with pytest.raises(LibraryError, match="name"):
            lib.name_photos(bad, _ids(lib, photos))
    assert lib.named_things() == []  # nothing was saved by any of them
    outside = tmp_path / "outside.jpg"
    outside.write_bytes((sorted(photos.iterdir())[0]).read_bytes())
    root = str(lib.root)
    assert cli(["names", "add", "--library", root, "mia", str(outside)]) == 1
    assert cli(["names", "add", "--library", root, "mia"]) == 1
    assert lib.named_things() == []


def test_a_deleted_photo_leaves_the_name_working_with_the_rest(lib, photos):
    ids = _ids(lib, photos, 3)
    lib.name_photos("mia", ids)
    gone = lib.photo(ids[0]).path
    (photos / gone.rsplit("/", 1)[1]).unlink()
    lib.reindex()
    named = lib.named_things()[0]
    assert (named.photos, set(named.photo_ids)) == (2, set(ids[1:]))
    after = [h.photo_id for h in lib.search("@mia", k=11)]
    assert ids[0] not in after
    assert after == [h.photo_id for h in lib.search(f"photo:{ids[1]} + photo:{ids[2]}", k=11)]
    # the vector is the centre of the two photos left
    model = lib.model
    vecs = np.stack([lib.catalog.vector_of(i, model.version) for i in ids[1:]])
    centre = vecs.mean(0) / np.linalg.norm(vecs.mean(0))
    assert np.allclose(lib.names.vector("mia", model), centre, atol=1e-5)
    for i in ids[1:]:
        (photos / lib.photo(i).path.rsplit("/", 1)[1]).unlink()
    lib.reindex()
    with pytest.raises(QueryError, match="names no photo of the library any more"):
        lib.search("@mia")


def test_the_name_can_become_a_caption_that_follows_it(lib, photos):
    ids = _ids(lib, photos, 3)
    lib.name_photos("mia", ids[:2], add_to_captions=True)
    assert all("mia" in lib.captions(i) for i in ids[:2])
    lib.name_photos("mia", ids[2:])  # a name in captions captions the photos added later too
    assert "mia" in lib.captions(ids[2])
    words = lib.search("mia", k=3)  # the word itself is now in their captions
    assert {h.photo_id for h in words if h.words} == set(ids)
    lib.rename_name("mia", "Mia-Rose")
    assert all(lib.captions(i) == ["Mia-Rose"] for i in ids)
    lib.delete_name("mia-rose")
    assert all(lib.captions(i) == [] for i in ids)
    assert lib.named_things() == []


def test_the_command_line_names_lists_renames_and_deletes(lib, photos, capsys):
    root = str(lib.root)
    files = [str(p) for p in sorted(photos.iterdir())[:3]]
    by_id = str(lib.photo_by_path(sorted(photos.iterdir())[4]).id)
    assert cli(["names", "add", "--library", root, "@Mia", *files, by_id]) == 0
    assert "@Mia names 4 photos" in capsys.readouterr().out
    assert cli(["names", "--library", root, "list"]) == 0
    assert "@Mia  4 photos" in capsys.readouterr().out
    assert cli(["search", "--library", root, "@mia", "-k", "4", "--json"]) == 0
    assert cli(["names", "rename", "--library", root, "mia", "rosie"]) == 0
    assert "renamed @mia to @rosie" in capsys.readouterr().out
    assert cli(["search", "--library", root, "@mia"]) == 1
    assert "no name @mia" in capsys.readouterr().err
    assert cli(["names", "delete", "--library", root, "rosie"]) == 0
    assert cli(["names", "delete", "--library", root, "rosie"]) == 1
    assert "no name @rosie" in capsys.readouterr().err
    assert cli(["names", "list", "--library", root, "--json"]) == 0
    assert capsys.readouterr().out.strip().endswith("[]")


def test_a_name_has_a_vector_for_each_model_version_made_from_its_photos(lib, photos):
    ids = _ids(lib, photos, 3)
    lib.name_photos("mia", ids)
    first = lib.model.version
    assert lib.names.stored_versions("mia") == [first]
    other = lib.add_model({**TINY_MODEL, "dim": 24, "seed": 1})  # activated: photos re-embedded
    assert lib.names.stored_versions("mia") == sorted([first, other])
    vec = lib.names.vector("mia", lib.model)
    assert vec.shape == (24,)  # the new model's space
    together = " + ".join(f"photo:{i}" for i in ids)
    assert [h.photo_id for h in lib.search("@mia", k=12)] == \
        [h.photo_id for h in lib.search(together, k=12)]
    lib.activate_model(first)
    lib.delete_model(other)  # its name vectors leave with it
    assert lib.names.stored_versions("mia") == [first]


def test_a_catalog_made_before_names_gets_their_tables_on_open(lib, photos):
    from sqlalchemy import text

    from engine.library import Library

    root, ids = lib.root, _ids(lib, photos, 2)
    with lib.catalog.session() as s:  # as an older version left it: no names tables
        for table in ("name_vectors", "name_photos", "names"):
            s.execute(text(f"DROP TABLE {table}"))
    lib.close()
    again = Library.open(root, device="cpu", default_model=TINY_MODEL)
    try:
        assert again.named_things() == []
        assert again.name_photos("mia", ids).photos == 2
        assert again.search("@mia", k=3)
    finally:
        again.close()
