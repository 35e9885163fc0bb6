"""Property-based tests for the parsers and the readers of files:

- every parser does work in proportion to its input, whatever the input (measured as Python lines
  run in the engine, never as time: a quadratic parser runs out of its budget and fails);
- every reader refuses a FIFO, a device, an oversized or binary (sparse) file with a message
  naming the file and why, and changes nothing; a sidecar that links outside the library's
  folders is not followed;
- file dates at their extremes and file names that are not UTF-8 are indexed or reported, never
  fatal.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from engine import captions
from engine.captions import embedded_descriptions, import_coco, import_csv, import_sidecars
from engine.csvrows import read_image_captions
from engine.errors import DatasetError, EngineError, ModelLoadError, QueryError
from engine.library import Library
from engine.models import read_checkpoint_meta
from engine.query import parse_query
from tests.conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[2]
SMALL, LARGE = 200_000, 400_000  # bytes of adversarial input: twice the input, twice the work
LINES_PER_CHAR = 40  # Python lines the engine may run per character of input
FEW = settings(max_examples=6, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture])


class TooMuchWork(Exception):
    pass


def work(fn, arg, budget: int) -> int:
    """Runs fn(arg) counting the lines of engine and app code it runs; more than ``budget``
    stops it with TooMuchWork. Whatever fn raises itself is caught: only the work counts."""
    count = 0

    def local(frame, event, _arg):
        nonlocal count
        if event == "line":
            count += 1
            if count > budget:
                raise TooMuchWork(f"more than {budget} lines for {len(arg)} characters")
        return local

    def calls(frame, event, _arg):
        return local if frame.f_code.co_filename.startswith(str(ROOT / "engine")) else None

    old = sys.gettrace()
    sys.settrace(calls)
    try:
        fn(arg)
    except TooMuchWork:
        raise
    except Exception:  # a refusal is an answer: the parser's own error is checked elsewhere
        pass
    finally:
        sys.settrace(old)
    return count


def assert_linear(fn, pattern: str) -> None:
    for size in (SMALL, LARGE):
        text = (pattern * (size // max(1, len(pattern)) + 1))[:size]
        work(fn, text, LINES_PER_CHAR * size)


# -- parsers stay linear ------------------------------------------------------------------------

QUERY_PIECES = st.sampled_from([" ", '"', "'", "“", "”", "+", "-", "*", "0.5*", "x", "é", "\n",
                                "photo:", "9", ".jpg", "\\", "/", "~"])


def _query(text: str) -> None:
    try:
        parse_query(text)
    except QueryError as e:
        assert str(e)


@FEW
@given(st.lists(QUERY_PIECES, min_size=1, max_size=6).map("".join))
@example(' "x')  # quotes that open and never close: each was looked for to the end
@example(" 'x")
@example(' “a')
@example("9")
@example("photo:9")
@example(" + -")
def test_the_query_parser_does_linear_work_on_any_query(pattern):
    assert_linear(_query, pattern)


CSV_PIECES = st.sampled_from(['"', ",", "\n", "\r", "a", " ", '""', "é", "image,caption\n"])


def _csv(text: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, encoding="utf-8") as f:
        f.write("image,caption\n" + text)
    try:
        read_image_captions(f.name)
    except DatasetError as e:
        assert f.name in str(e)
    finally:
        os.unlink(f.name)


@FEW
@given(st.lists(CSV_PIECES, min_size=1, max_size=6).map("".join))
@example('"')
@example("a,b\n")
def test_the_caption_csv_reader_does_linear_work_on_any_file(pattern):
    assert_linear(_csv, pattern)


XMP_PIECES = st.sampled_from(["<dc:description>", "<dc:description", "</dc:description>",
                              "<rdf:li>", "</rdf:li>", ">", "<", "a"])


def _xmp_photo(xmp: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    path = Path(tempfile.mkdtemp()) / "x.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    data = path.read_bytes()
    path.unlink()
    path.parent.rmdir()
    return data


@FEW
@given(st.lists(XMP_PIECES, min_size=1, max_size=5).map("".join))
@example("<dc:description>")  # opening tags that never close: each was looked for to the end
@example("<dc:description")
@example("<dc:description><rdf:li>")
def test_photo_descriptions_are_read_in_linear_work(pattern):
    for size in (SMALL, LARGE):
        xmp = (pattern * (size // len(pattern) + 1))[:size]
        described = "<dc:description><rdf:li>a dog on a beach</rdf:li></dc:description>" + xmp
        assert "a dog on a beach" in embedded_descriptions(_xmp_photo(described))


def test_a_description_before_many_unclosed_tags_is_found():
    xmp = ("<dc:description><rdf:li>a dog on a beach</rdf:li></dc:description>"
           + "<dc:description>" * (LARGE // 16))
    assert embedded_descriptions(_xmp_photo(xmp)) == ["a dog on a beach"]


# -- readers refuse special and oversized files ---------------------------------------------------

def _photo(path: Path, shade: int) -> None:
    Image.new("RGB", (40, 40), (shade, 255 - shade, (shade * 7) % 256)).save(path)


@pytest.fixture
def lib(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        _photo(folder / f"{i}.png", 60 * i)
    library = Library.open(tmp_path / "library", device="cpu", default_model=TINY_MODEL)
    library.add_folders([folder])
    yield library, folder
    library.close()


class Fifo:
    """A FIFO with a writer that would hand it ``data`` if a reader opened it and waited."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        os.mkfifo(path)
        self.thread = threading.Thread(target=self._write, args=(data,), daemon=True)
        self.thread.start()

    def _write(self, data: bytes) -> None:
        try:
            with open(self.path, "wb") as f:  # waits for a reader
                f.write(data)
        except BrokenPipeError:  # the reader looked at it and let go without reading
            pass

    def close(self) -> None:
        if self.thread.is_alive():  # nobody read it: be the reader that lets the writer go
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self.thread.join(5)
            os.close(fd)


def _special(kind: str, path: Path, data: bytes):
    """The file the reader is given, made as ``kind``; returns what to close afterwards."""
    if kind == "fifo":
        return Fifo(path, data)
    if kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "sparse":  # 50 MB that take no disk: zeros, like a file preallocated and empty
        with open(path, "wb") as f:
            f.truncate(50 << 20)
    elif kind == "huge":  # far beyond any caption file: refused before it is read
        with open(path, "wb") as f:
            f.write(data)
            f.truncate(300 << 20)
    elif kind == "folder":
        path.mkdir()
    return None


KINDS = ["fifo", "device", "sparse", "huge", "folder"]


def _captions(library: Library) -> int:
    return library.status().captions


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fmt", ["csv", "coco"])
def test_a_special_or_oversized_caption_file_is_refused_with_its_reason(lib, tmp_path, kind,
                                                                        fmt):
    library, folder = lib
    if fmt == "csv":
        data = b"image,caption\n0.png,a caption from nowhere\n"
        importer = import_csv
    else:
        data = json.dumps({"images": [{"id": 1, "file_name": "0.png"}], "annotations": [
            {"image_id": 1, "caption": "a caption from nowhere"}]}).encode()
        importer = import_coco
    path = tmp_path / f"captions.{fmt}"
    opened = _special(kind, path, data)
    try:
        with pytest.raises(DatasetError) as err:
            importer(library, path)
    finally:
        if opened:
            opened.close()
    message = str(err.value)
    assert str(path) in message
    assert {"fifo": "pipe (FIFO)", "device": "a device", "sparse": "not a text file",
            "huge": "300 MB, more than the 256 MB", "folder": "a folder"}[kind] in message
    assert _captions(library) == 0


@pytest.mark.parametrize("kind", ["fifo", "sparse", "huge", "folder"])
def test_a_special_or_oversized_sidecar_is_reported_and_the_others_imported(lib, kind):
    library, folder = lib
    (folder / "0.txt").write_text("a red square\n")
    opened = _special(kind, folder / "1.txt", b"a caption from nowhere\n")
    try:
        report = import_sidecars(library)
    finally:
        if opened:
            opened.close()
    assert report.captions_added == 1
    assert library.captions(library.photo_by_path(folder / "0.png").id) == ["a red square"]
    assert library.captions(library.photo_by_path(folder / "1.png").id) == []
    assert [name for name, _ in report.unmatched] == [str(folder / "1.txt")]
    why = report.unmatched[0][1]
    assert {"fifo": "pipe (FIFO)", "sparse": "more than the 1 MB", "huge": "more than the 1 MB",
            "folder": "a folder"}[kind] in why


def test_a_sidecar_linking_outside_the_library_folders_is_not_followed(lib, tmp_path):
    library, folder = lib
    secret = tmp_path / "elsewhere" / "notes.txt"
    secret.parent.mkdir()
    secret.write_text("the text of a file that is not a caption\n")
    (folder / "0.txt").symlink_to(secret)
    (folder / "1.png.txt").symlink_to("/dev/zero")
    (folder / "shared.txt").write_text("a caption shared by two photos\n")
    (folder / "2.txt").symlink_to(folder / "shared.txt")  # inside the folders: followed
    report = import_sidecars(library)
    assert report.captions_added == 1
    assert library.captions(library.photo_by_path(folder / "2.png").id) == [
        "a caption shared by two photos"]
    assert library.captions(library.photo_by_path(folder / "0.png").id) == []
    assert dict(report.unmatched) == {
        str(folder / "0.txt"): "a link to a file outside the library's folders: not followed",
        str(folder / "1.png.txt"): "a link to a file outside the library's folders: not followed"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_special_or_oversized_checkpoint_config_is_a_model_load_error(tmp_path, kind):
    folder = tmp_path / "model"
    folder.mkdir()
    opened = _special(kind, folder / "config.json", b'{"config": {"family": "scratch"}}')
    try:
        with pytest.raises(ModelLoadError, match="config.json is unreadable"):
            read_checkpoint_meta(folder)
    finally:
        if opened:
            opened.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_special_or_oversized_settings_file_gives_the_defaults(tmp_path, kind, caplog):
    settings_mod = pytest.importorskip("app.settings")
    path = tmp_path / "settings.json"
    opened = _special(kind, path, b'{"version": 1, "results": 7}')
    try:
        loaded = settings_mod.load_settings(path)
    finally:
        if opened:
            opened.close()
    assert loaded == settings_mod.Settings()
    assert "using the defaults" in caplog.text


def test_a_photo_replaced_by_a_fifo_does_not_stop_reading_descriptions(lib):
    library, folder = lib
    (folder / "1.png").unlink()
    fifo = Fifo(folder / "1.png", b"")
    try:
        report = captions.import_embedded(library)
    finally:
        fifo.close()
    assert [name for name, _ in report.unmatched] == [str(folder / "1.png")]
    assert "pipe (FIFO)" in report.unmatched[0][1]


# -- file-system metadata at its extremes -------------------------------------------------------

YEAR_1, YEAR_9999 = -62_135_596_800, 253_402_300_799  # seconds since 1970


def _extreme_folder(tmp_path: Path) -> Path:
    """A folder on tmpfs where there is one (it keeps any date); else the test's own folder
    (which keeps what its file system can)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(dir=shm, prefix="chikaku-test-"))
    folder = tmp_path / "extreme"
    folder.mkdir()
    return folder


@pytest.fixture
def extreme(tmp_path):
    folder = _extreme_folder(tmp_path)
    library = Library.open(tmp_path / "library", device="cpu", default_model=TINY_MODEL)
    yield library, folder
    library.close()
    if str(folder).startswith("/dev/shm/"):
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


@settings(FEW, max_examples=12)
@given(st.integers(min_value=YEAR_1, max_value=YEAR_9999), st.integers(0, 999_999_999))
@example(YEAR_1, 0)
@example(YEAR_9999, 999_999_999)
@example(-1, 0)
@example(15_032_385_535, 0)  # the latest date ext4 keeps (year 2446), beyond 64-bit nanoseconds
def test_any_file_date_is_indexed_and_kept(extreme, seconds, nanos):
    library, folder = extreme
    photo = folder / "dated.png"
    if not photo.exists():
        _photo(photo, 90)
    when = seconds * 1_000_000_000 + nanos
    os.utime(photo, ns=(when, when))
    library.add_folders([folder])
    again = library.add_folders([folder])  # a date kept as it was read: nothing to do again
    assert (again.added, again.updated, again.skipped) == (0, 0, {})
    row = library.photo_by_path(photo)
    assert row is not None and row.status == "ok" and row.date is not None
    assert library.search(image=photo, k=1)[0].path == str(photo)


@settings(FEW, max_examples=12)
@given(st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b
                                                  and not b.startswith(b".")))
# (a name starting with "." is a hidden file, never indexed by design)
@example(b"\xff\xfe")
@example(b"caf\xe9")  # Latin-1, as an old camera card or archive names it
@example(b"\xed\xa0\x80")  # a UTF-16 surrogate written as UTF-8
def test_any_file_name_is_indexed_or_reported(extreme, name):
    library, folder = extreme
    path = os.path.join(os.fsencode(folder), name + b".png")
    _photo(Path(os.fsdecode(path)), 30)
    try:
        report = library.add_folders([folder])
    finally:
        os.unlink(path)
    shown = os.fsdecode(path)
    try:
        shown.encode("utf-8")
    except UnicodeEncodeError:
        assert any("not valid UTF-8" in why for why in report.skipped.values())
        return
    assert library.photo_by_path(shown) is not None


def test_a_query_with_bytes_that_are_not_utf8_is_answered(lib):
    library, folder = lib
    query = os.fsdecode(b"a red \xff\xfe photo")  # as an argument in a non-UTF-8 locale gives it
    try:
        hits = library.search(query, k=2)
    except EngineError as e:
        assert str(e)
        return
    assert len(hits) == 2
