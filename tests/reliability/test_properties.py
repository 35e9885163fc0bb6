"""Property-based tests: whatever text, file contents or bytes come in, the engine answers with
a result or with its own error (the kind the app shows as a message), never with another
exception."""

from __future__ import annotations

import json
import math
import shutil
import warnings

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.captions import ImportReport, import_coco, import_csv, import_sidecars
from engine.errors import BadImage, DatasetError, EngineError, QueryError
from engine.imageio import DecodedImage, decode
from engine.library import Library
from engine.query import Term, parse_query
from tests.reliability.helpers import TINY_MODEL, small_photos

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow on corrupt EXIF

EXAMPLES = 200
PROPS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Pieces a query is made of, awkward ones included, so that generated queries hit the parser's
# corners (quotes, operators, weights, photo ids, paths) far more often than plain text would.
PIECES = st.sampled_from([
    " ", "  ", "+", "-", "*", "'", '"', "“", "”", "0.5*", "2*", ".5 *", "9" * 40, "photo:",
    "photo:7", "photo:" + "9" * 25, "dog", "t-shirt", "a b", ".jpg", "x.jpg", "/tmp/", "~",
    "~nobody/", "\n", "\t", "\x00", "é", "写真", "x" * 300 + ".png", "../", "\\"])
QUERIES = st.one_of(st.text(max_size=120), st.lists(PIECES, max_size=12).map("".join),
                    st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=10).map("".join))
MAGIC = st.sampled_from([b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a",
                         b"RIFF\x00\x00\x00\x00WEBPVP8L", b"II*\x00\x08\x00\x00\x00", b"MM\x00*",
                         b"BM", b"\x00\x00\x00\x18ftypheic"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["images", "annotations", "id", "image_id", "file_name", "caption",
                         "version", "device", "library", "results", "train_steps",
                         "exclude_patterns", "x"]), inner, max_size=5),
    max_leaves=25)
COCO = st.fixed_dictionaries({
    "images": st.lists(st.fixed_dictionaries({"id": JSON, "file_name": JSON}), max_size=4),
    "annotations": st.lists(st.fixed_dictionaries({"image_id": JSON, "caption": JSON}),
                            max_size=4)})
DEEP = b"[" * 5000 + b"]" * 5000  # nesting deep enough to exhaust a recursive parser


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    base = tmp_path_factory.mktemp("props")
    photos = small_photos(base / "photos", 6, start=500)
    shutil.copy(photos[0], base / "photos" / "dup.jpg")
    library = Library.open(base / "library", device="cpu", default_model=TINY_MODEL)
    library.add_folders([base / "photos"])
    yield library, base
    library.close()


def _check_terms(terms) -> None:
    assert isinstance(terms, list) and terms
    for t in terms:
        assert isinstance(t, Term) and t.kind in ("text", "image", "photo")
        assert isinstance(t.weight, float) and math.isfinite(t.weight)
        assert isinstance(t.value, str) and t.value
        if t.kind == "photo":
            assert 0 <= int(t.value) < 2**63


@PROPS
@given(QUERIES)
@example("x" * 300 + ".jpg")
@example("9" * 400 + "*cat")
@example("photo:" + "9" * 30)
@example("photo:" + "7" * 5000)
def test_parse_query_gives_terms_or_a_query_error(query):
    try:
        terms = parse_query(query)
    except QueryError as e:
        assert str(e)
        return
    _check_terms(terms)


@PROPS
@given(QUERIES, st.integers(min_value=-3, max_value=50))
@example("photo:" + "9" * 30, 5)
@example("9" * 400 + "*cat", 5)
@example("1" + "0" * 45 + "*dog", 5)
def test_search_gives_hits_or_an_engine_error(lib, query, k):
    library, _ = lib
    try:
        with warnings.catch_warnings():  # a NaN or an overflow is a failure too, not a warning
            warnings.simplefilter("error", RuntimeWarning)
            hits = library.search(query, k=k)
    except EngineError as e:
        assert str(e)
        return
    assert len(hits) <= k
    assert all(math.isfinite(h.score) and 0.0 <= h.strength <= 1.0 for h in hits)
    assert len({h.photo_id for h in hits}) == len(hits)
    # by meaning alone (no words of the query in a photo's captions or name), best cosine first
    if not any(h.words for h in hits):
        plain = [h.score for h in hits]
        assert plain == sorted(plain, reverse=True) or _words_found(library, query)


def _words_found(library, query: str) -> bool:
    """Whether some photo's words hold a word of the query (the fusion may then lift it)."""
    from engine.ranking import content_words

    return bool(library.catalog.photos_with_words([[w] for w in content_words(query)]))


def _imported(fn, *args) -> None:
    try:
        report = fn(*args)
    except DatasetError as e:
        assert str(e)
        return
    assert isinstance(report, ImportReport) and report.summary()


@PROPS
@given(st.binary(max_size=2000), st.sampled_from([None, "train", "test"]))
@example(b"image,caption\n" + b"x" * 200_000 + b",y\n", None)
@example(b"image,caption\nphoto.jpg,\x00\n\xff\xfe,broken\n", "train")
def test_csv_import_of_any_bytes_gives_a_report_or_a_dataset_error(lib, data, split):
    library, base = lib
    (base / "any.csv").write_bytes(data)
    _imported(import_csv, library, base / "any.csv", split)


@PROPS
@given(st.lists(st.tuples(st.text(max_size=30), st.text(max_size=60)), max_size=8))
def test_csv_import_of_any_rows_gives_a_report(lib, rows):
    library, base = lib
    names = [p.name for p in sorted((base / "photos").iterdir())]
    lines = ["image,caption"] + [
        json.dumps(names[len(a) % len(names)] if len(a) % 3 == 0 else a) + "," + json.dumps(b)
        for a, b in rows]
    (base / "rows.csv").write_text("\n".join(lines), encoding="utf-8")
    _imported(import_csv, library, base / "rows.csv")


@PROPS
@given(st.one_of(st.binary(max_size=2000), JSON.map(lambda v: json.dumps(v).encode()),
                 COCO.map(lambda v: json.dumps(v).encode())))
@example(DEEP)
@example(b'{"images": [{"id": [1], "file_name": "a.jpg"}], "annotations": []}')
@example(b'{"images": [], "annotations": [{"image_id": {}, "caption": 1}]}')
def test_coco_import_of_any_contents_gives_a_report_or_a_dataset_error(lib, data):
    library, base = lib
    (base / "any.json").write_bytes(data)
    _imported(import_coco, library, base / "any.json")


@PROPS
@given(st.binary(max_size=3000), st.booleans())
def test_sidecar_import_of_any_contents_gives_a_report(lib, data, long_name):
    library, base = lib
    photo = sorted((base / "photos").glob("*.jpg"))[1]
    side = photo.with_name(photo.name + ".txt") if long_name else photo.with_suffix(".txt")
    side.write_bytes(data)
    try:
        _imported(import_sidecars, library)
    finally:
        side.unlink()


@PROPS
@given(MAGIC, st.binary(max_size=4000))
def test_decode_of_any_bytes_returns_an_image_or_raises_bad_image(magic, data):
    try:
        image = decode(magic + data, size=32)
    except BadImage as e:
        assert str(e)
        return
    assert isinstance(image, DecodedImage) and image.pixels.shape == (32, 32, 3)


def _settings_loader():
    mod = pytest.importorskip("app.settings", reason="the app's settings module is not there")
    if not callable(getattr(mod, "load_settings", None)):
        pytest.skip("the app's settings module has no load_settings yet")
    return mod


# This test found that a settings file that is not UTF-8, or JSON nested too deeply, escaped
# load_settings; both now fall back to the defaults.
@settings(PROPS, report_multiple_bugs=False)
@given(st.one_of(st.binary(max_size=1000), JSON.map(lambda v: json.dumps(v).encode()),
                 st.dictionaries(st.sampled_from(["version", "device", "library", "results",
                                                  "train_steps", "exclude_patterns"]),
                                 JSON, max_size=6).map(lambda v: json.dumps(v).encode())))
@example(b"\xff\xfe not UTF-8")
@example(DEEP)
@example(b'{"version": 1, "results": 1e999, "exclude_patterns": [1, "x"]}')
def test_settings_loader_never_fails_on_any_file(tmp_path_factory, data):
    mod = _settings_loader()
    path = tmp_path_factory.getbasetemp() / "settings.json"
    path.write_bytes(data)
    loaded = mod.load_settings(path)
    assert isinstance(loaded, mod.Settings)
