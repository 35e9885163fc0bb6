"""A corpus of hostile and broken files: truncated images in every format, random bytes behind
real magic numbers, decompression bombs, absurd dimensions, damaged EXIF, deep folders, names
with newlines or bytes that are not UTF-8, empty files and a 2 GB sparse file.

Indexing it (in a child process whose peak memory is measured) finishes; every bad file is
reported with a reason; every good photo among them is searchable; no file is changed."""

from __future__ import annotations

import io
import json
import os
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from engine.library import Library
from tests.conftest import dataset_images
from tests.reliability.helpers import ROOT, fingerprints, run_job

# The scratch model at the real input size: decoding and resizing are exercised as for real.
MODEL_224 = {"family": "scratch", "dim": 32, "width": 16, "input_size": 224, "seed": 0}
PEAK_RSS_MB = 1536
FORMATS = {"jpg": ("JPEG", {"quality": 90}), "png": ("PNG", {}), "gif": ("GIF", {}),
           "webp": ("WEBP", {"quality": 80}), "tiff": ("TIFF", {})}
MAGIC = {"jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "png": b"\x89PNG\r\n\x1a\n",
         "gif": b"GIF89a", "webp": b"RIFF\x00\x10\x00\x00WEBPVP8 ", "tiff": b"II*\x00",
         "tif": b"MM\x00*", "bmp": b"BM", "heic": b"\x00\x00\x00\x18ftypheic"}


# -- hand-made files ---------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png(width: int, height: int, rows=None, depth: int = 8, colour: int = 2,
        extra: bytes = b"") -> bytes:
    """A PNG whose IHDR says width x height; ``rows`` yields the raw rows (without filter byte),
    None means a few bytes of zeros only (a header that lies)."""
    z = zlib.compressobj(6)
    if rows is None:
        data = zlib.compress(b"\x00" * 256)
    else:
        data = b"".join(z.compress(b"\x00" + r) for r in rows) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra + _chunk(b"IDAT", data)
            + _chunk(b"IEND", b""))


def tiff(width: int, height: int, strip: bytes = b"\x00" * 64) -> bytes:
    """A little-endian greyscale TIFF claiming width x height, with one short strip."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
            (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(strip))]
    data_at = 8 + 2 + 12 * len(tags) + 4
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHII", t, k, 1, data_at if t == 273 else v) for t, k, v in tags)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + strip


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    at = data.index(b"\xff\xc0") + 5  # SOF0: marker, length (2), precision (1), height, width
    return data[:at] + struct.pack(">HH", height, width) + data[at + 4:]


def patch_vp8l_size(data: bytes, width: int, height: int) -> bytes:
    assert data[12:16] == b"VP8L"
    bits = struct.unpack("<I", data[21:25])[0] & ~((1 << 28) - 1)
    bits |= (width - 1) | ((height - 1) << 14)
    return data[:21] + struct.pack("<I", bits) + data[25:]


def jpeg_with_app1(jpeg: bytes, payload: bytes) -> bytes:
    seg = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + seg + jpeg[2:]


def exif_self_loop() -> bytes:
    """EXIF whose Exif sub-IFD pointer and next-IFD pointer both point back at IFD0."""
    ifd = struct.pack("<H", 2) + struct.pack("<HHII", 0x0112, 3, 1, 6) \
        + struct.pack("<HHII", 0x8769, 4, 1, 8) + struct.pack("<I", 8)
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd


# -- the corpus -----------------------------------------------------------------------------
class Corpus:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.good: set[str] = set()  # relative names that must be indexed and searchable
        self.bad: dict[str, str] = {}  # relative name -> words its reason must contain
        self.either: set[str] = set()  # broken in ways a decoder may or may not survive

    def put(self, name: str | bytes, data: bytes, kind: str, words: str = "") -> None:
        rel = os.fsdecode(name)
        path = os.path.join(os.fsencode(self.root), os.fsencode(name))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        {"good": self.good, "either": self.either}.get(kind, set()).add(rel)
        if kind == "bad":
            self.bad[rel] = words

    @property
    def count(self) -> int:
        return len(self.good) + len(self.bad) + len(self.either)


def build(root: Path) -> Corpus:
    c = Corpus(root)
    rng = random.Random(1984)
    sources = [Image.open(p).convert("RGB") for p in dataset_images()[400:406]]
    for im in sources:
        im.thumbnail((200, 200))
    for i, (ext, (fmt, kw)) in enumerate(FORMATS.items()):
        data = encode(sources[i], fmt, **kw)
        c.put(f"good/photo.{ext}", data, "good")
        n = len(data)
        for cut in sorted({1, 3, 8, 16, 50, n // 5, 2 * n // 5, 3 * n // 5, 4 * n // 5, n - 1}):
            c.put(f"truncated/{ext}-{cut:06d}.{ext}", data[:cut], "bad" if cut <= 16 else
                  "either", "")
    for ext, magic in MAGIC.items():
        for size in (40, 3000):
            c.put(f"magic/{ext}-{size}.{ext}", magic + rng.randbytes(size), "bad")
    c.put("text.webp", b"these are words, not a picture\n" * 10, "bad", "not an image")
    c.put("jpeg-named.png", encode(sources[5], "JPEG"), "good")
    c.put("empty.jpg", b"", "bad", "empty")
    c.put("empty.png", b"", "bad", "empty")

    # Decompression bombs: headers claiming far more pixels than the file could ever hold.
    small_jpeg = encode(sources[0], "JPEG")
    c.put("bombs/png-100k.png", png(100_000, 100_000), "bad", "bomb")
    c.put("bombs/png-400mp.png", png(20_000, 20_000), "bad", "too large")
    gif = encode(sources[1], "GIF")
    c.put("bombs/gif-64k.gif", gif[:6] + struct.pack("<HH", 65535, 65535) + gif[10:], "bad",
          "bomb")
    c.put("bombs/tiff-100k.tiff", tiff(100_000, 100_000), "bad", "bomb")
    c.put("bombs/tiff-300mp.tiff", tiff(20_000, 15_000), "bad", "too large")
    c.put("bombs/webp-16k.webp", patch_vp8l_size(encode(sources[2], "WEBP", lossless=True),
                                                 16384, 16384), "bad", "")
    c.put("bombs/jpeg-65k.jpg", patch_jpeg_size(small_jpeg, 65500, 65500), "bad", "bomb")
    c.put("bombs/jpeg-900mp.jpg", patch_jpeg_size(small_jpeg, 30000, 30000), "either")
    # ...and real ones inside the pixel cap: a few hundred KB that inflate to 64 MP.
    c.put("bombs/deflate-64mp-rgb.png", png(8000, 8000, (bytes(24000) for _ in range(8000))),
          "good")
    c.put("bombs/deflate-64mp-16bit.png",
          png(8000, 8000, (bytes(16000) for _ in range(8000)), depth=16, colour=0), "good")

    # Absurd and empty dimensions.
    c.put("shapes/strip-1x100000.png",
          png(1, 100_000, (bytes((i % 251, 90, 200)) for i in range(100_000))), "good")
    c.put("shapes/strip-100000x1.png",
          png(100_000, 1, [bytes(v for i in range(100_000) for v in (40, i % 253, 7))]), "good")
    c.put("shapes/zero-width.png", png(0, 50), "bad")
    c.put("shapes/zero-height.tiff", tiff(50, 0), "bad")
    c.put("shapes/zero-gif.gif", gif[:6] + struct.pack("<HH", 0, 0) + gif[10:], "either")

    # EXIF that is wrong, garbage, huge or circular: never fatal.
    exif = Image.Exif()
    exif[0x0112] = 99
    c.put("exif/orientation-99.jpg", encode(sources[3], "JPEG", exif=exif.tobytes()), "good")
    plain = encode(sources[4], "JPEG")
    c.put("exif/garbage.jpg", jpeg_with_app1(plain, b"Exif\x00\x00" + rng.randbytes(4000)),
          "good")
    c.put("exif/not-tiff.jpg", jpeg_with_app1(plain, b"Exif\x00\x00XX" + bytes(100)), "good")
    c.put("exif/self-loop.jpg", jpeg_with_app1(plain, exif_self_loop()), "good")
    big = Image.Exif()
    big[0x010E] = "a very long description " * 2600
    big[0x0132] = "not a date at all"
    c.put("exif/huge.jpg", encode(sources[2], "JPEG", exif=big.tobytes()), "good")
    c.put("exif/huge-chunk.png", png(64, 64, (bytes(192) for _ in range(64)),
                                     extra=_chunk(b"eXIf", rng.randbytes(4 << 20))), "good")

    # Deep folders and awkward names.
    deep = "/".join(f"level{i:02d}" for i in range(60))
    c.put(f"{deep}/deep.jpg", encode(sources[5].rotate(90), "JPEG"), "good")
    c.put("names/line\nbreak.jpg", encode(sources[0].rotate(180), "JPEG"), "good")
    c.put(b"names/bad\xff.jpg", encode(sources[1].rotate(180), "JPEG"), "bad", "utf-8")
    c.put(b"names/folder\xfe/inside.jpg", encode(sources[2].rotate(180), "JPEG"), "bad",
          "utf-8")
    with open(root / "giant.jpg", "wb") as f:  # 2 GB that take no room on the disk
        f.truncate(2 << 30)
    c.bad["giant.jpg"] = "too large"
    return c


def _reported(reasons: dict[str, str], root: Path, name: str) -> str | None:
    """The reason given for a corpus file, or for the folder it sits in. Names that are not
    UTF-8 are reported with their odd bytes written as \\xNN."""
    path, top = os.fsencode(root / name), os.fsencode(root)
    while path != top:
        key = path.decode("utf-8", "backslashreplace")
        if key in reasons:
            return reasons[key]
        path = os.path.dirname(path)
    return None


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    corpus = build(base / "corpus")
    before = fingerprints(corpus.root)
    library = base / "library"
    run = run_job({"kind": "index", "library": str(library), "model": MODEL_224,
                   "folders": [str(corpus.root)], "batch_size": 8, "decode_workers": 2,
                   "memory_guard_gb": 4}, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(next(ln[5:] for ln in run.stdout.splitlines() if ln.startswith("DONE ")))
    print(f"\nreliability: {corpus.count} hostile inputs tried, {len(report['reasons'])} "
          f"reported, {report['added']} indexed, peak RSS {report['maxrss_mb']:.0f} MB")
    lib = Library.open(library, device="cpu")
    yield corpus, report, lib, before
    lib.close()


def test_indexing_finishes_and_every_bad_file_is_reported_with_a_reason(indexed):
    corpus, report, lib, _ = indexed
    reasons = report["reasons"]
    for name, words in corpus.bad.items():
        why = _reported(reasons, corpus.root, name)
        assert why, f"{name!r} was not reported"
        assert words in why.lower(), (name, why)
    for name in corpus.either:
        photo = lib.photo_by_path(corpus.root / name)
        why = _reported(reasons, corpus.root, name)
        assert (photo is not None and photo.status == "ok") != bool(why), (name, why)
    skipped_in_catalog = dict(lib.status().skipped)
    for path, why in reasons.items():  # every file that was read has its reason kept
        if path in skipped_in_catalog:
            assert skipped_in_catalog[path] == why
    assert set(skipped_in_catalog) <= set(reasons)
    assert report["added"] == lib.status().photos == len(corpus.good) + sum(
        1 for n in corpus.either if _reported(reasons, corpus.root, n) is None)


def test_every_good_photo_among_them_is_searchable(indexed):
    corpus, _, lib, _ = indexed
    for name in sorted(corpus.good):
        path = corpus.root / name
        photo = lib.photo_by_path(path)
        assert photo is not None and photo.status == "ok", name
        hits = lib.search(image=path, k=lib.status().photos)
        mine = next(h for h in hits if h.photo_id == photo.id)
        assert mine.score == pytest.approx(1.0, abs=1e-3), name  # its own vector comes back
        assert mine.score >= hits[0].score - 1e-4, name  # ...at the top (ties allowed)
    strip = lib.photo_by_path(corpus.root / "shapes/strip-1x100000.png")
    assert (strip.width, strip.height) == (1, 100_000)


def test_memory_stays_bounded(indexed):
    _, report, _, _ = indexed
    assert report["maxrss_mb"] < PEAK_RSS_MB, report["maxrss_mb"]


def test_no_file_is_touched(indexed):
    corpus, _, _, before = indexed
    assert fingerprints(corpus.root) == before


def test_the_command_line_lists_what_it_skipped_on_the_same_corpus(indexed):
    corpus, report, lib, before = indexed
    run = subprocess.run([sys.executable, "-m", "engine.cli", "index", str(corpus.root),
                          "--library", str(lib.root), "--quiet", "--device", "cpu"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert "0 embedded" in run.stdout and f"{len(report['reasons'])} skipped" in run.stdout
    assert "giant.jpg: file too large" in run.stdout
    assert "names/bad\\xff.jpg: the file name is not valid UTF-8" in run.stdout
    assert "names/folder\\xfe: the folder name is not valid UTF-8" in run.stdout
    assert fingerprints(corpus.root) == before
