"""A folder of every kind of bad and awkward file: indexing finishes, good photos are searchable,
bad ones are listed with their reasons, junk and hidden files are left alone."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import engine.imageio
import engine.indexer
from engine.scan import scan
from tests.conftest import dataset_images


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A tiny PNG file whose header claims width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))


def _source(i: int) -> Image.Image:
    return Image.open(dataset_images()[100 + i]).convert("RGB")


def build_folder(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Returns (good: name -> what it is, bad: name -> words its reason must contain)."""
    root.mkdir(parents=True, exist_ok=True)
    good, bad = {}, {}
    src = iter(range(100))

    def save(name: str, im: Image.Image, what: str, **kw) -> None:
        im.save(root / name, **kw)
        good[name] = what

    save("plain.jpg", _source(next(src)), "JPEG", quality=90)
    save("photo.png", _source(next(src)), "PNG")
    save("photo.webp", _source(next(src)), "WebP", quality=80)
    save("photo.bmp", _source(next(src)), "BMP")
    save("photo.tiff", _source(next(src)), "TIFF")
    frames = [_source(next(src)), _source(next(src))]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    good["animated.gif"] = "animated GIF"
    save("cmyk.jpg", _source(next(src)).convert("CMYK"), "CMYK JPEG")
    a = np.asarray(_source(next(src)).convert("L"), dtype=np.uint16) * 257
    save("sixteen.png", Image.fromarray(a), "16-bit PNG")
    save("palette.png", _source(next(src)).convert("P", palette=Image.Palette.ADAPTIVE),
         "palette PNG")
    rgba = _source(next(src)).convert("RGBA")
    rgba.putalpha(128)
    save("alpha.png", rgba, "RGBA PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    exif[0x0132] = "2021:07:04 10:30:00"
    upright = _source(next(src))
    save("rotated.jpg", upright, "EXIF-rotated JPEG", exif=exif)
    good["rotated.jpg"] = f"EXIF-rotated JPEG, stored {upright.width}x{upright.height}"
    big = _source(next(src)).resize((6000, 4500))
    save("large.jpg", big, "27 MP JPEG (decoded in draft mode)", quality=85)
    save("wrong-extension.png", _source(next(src)), "a JPEG named .png", format="JPEG")
    try:
        import pillow_heif  # noqa: F401

        save("iphone.heic", _source(next(src)), "HEIC", format="HEIF", quality=80)
    except (ImportError, KeyError, OSError, ValueError):
        pass

    (root / "empty.jpg").write_bytes(b"")
    bad["empty.jpg"] = "empty"
    data = (root / "plain.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    bad["truncated.jpg"] = "truncated"
    (root / "notes.jpg").write_text("this is not a photo, just text\n" * 20)
    bad["notes.jpg"] = "not an image"
    _png_header_only(root / "bomb.png", 50_000, 50_000)
    bad["bomb.png"] = "bomb"
    _png_header_only(root / "huge.png", 12_000, 12_000)
    bad["huge.png"] = "too large"
    (root / "random.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(4000))
    bad["random.jpg"] = "corrupt"
    _source(0).save(root / "locked.jpg", quality=90)
    bad["locked.jpg"] = "permission denied"
    _source(1).save(root / "vanishing.jpg", quality=90)
    bad["vanishing.jpg"] = "vanished"

    # Junk and hidden entries: never indexed, never reported.
    for junk in (".hidden", ".thumbnails", "@eaDir"):
        (root / junk).mkdir()
        _source(2).save(root / junk / "x.jpg")
    _source(3).save(root / "._plain.jpg", format="JPEG")
    _source(4).save(root / ".secret.jpg")
    (root / "readme.txt").write_text("not a photo and not named like one")

    os.symlink(root, root / "loop")  # a folder that contains itself
    bad["loop"] = "symlink loop"
    os.symlink(root / "nowhere.jpg", root / "broken.jpg")
    bad["broken.jpg"] = "broken symlink"
    return good, bad


def test_every_bad_file_is_reported_and_every_good_photo_is_searchable(tiny_lib, tmp_path,
                                                                       monkeypatch):
    folder = tmp_path / "mess"
    good, bad = build_folder(folder)
    locked = str(folder / "locked.jpg")
    if os.geteuid() != 0:
        os.chmod(locked, 0)
    else:  # root reads anything: make the file unreadable for the indexer alone
        real_open = open

        def guarded_open(path, *a, **kw):
            if str(path) == locked:
                raise PermissionError(13, "Permission denied", locked)
            return real_open(path, *a, **kw)

        monkeypatch.setattr(engine.imageio, "open", guarded_open, raising=False)

    def scan_then_vanish(*a, **kw):
        result = scan(*a, **kw)
        os.remove(folder / "vanishing.jpg")  # listed by the scan, gone before it is read
        return result

    monkeypatch.setattr(engine.indexer, "scan", scan_then_vanish)

    report = tiny_lib.add_folders([folder])

    reported = {Path(p).name: reason for p, reason in report.skipped.items()}
    assert set(reported) == set(bad), reported
    for name, words in bad.items():
        assert words in reported[name].lower(), (name, reported[name])
    assert report.added == len(good)

    status = {Path(p).name: r for p, r in tiny_lib.status().skipped}
    expected_in_catalog = set(bad) - {"loop", "broken.jpg", "vanishing.jpg"}
    assert set(status) == expected_in_catalog
    assert tiny_lib.status().photos == len(good)

    for name in good:
        hits = tiny_lib.search(image=folder / name, k=1)
        assert Path(hits[0].path).name == name, (name, good[name])
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)

    rotated = tiny_lib.photo_by_path(folder / "rotated.jpg")
    w, h = map(int, good["rotated.jpg"].rsplit(" ", 1)[1].split("x"))
    assert (rotated.width, rotated.height) == (h, w)  # shown upright: turned a quarter
    assert rotated.taken_at is not None and rotated.taken_at.year == 2021


def test_skipped_files_are_not_retried_until_they_change(tiny_lib, tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "notes.jpg").write_text("text")
    _source(0).save(folder / "ok.jpg")
    first = tiny_lib.add_folders([folder])
    assert list(map(lambda p: Path(p).name, first.skipped)) == ["notes.jpg"]
    again = tiny_lib.add_folders([folder])
    assert again.embedded == 0 and Path(next(iter(again.skipped))).name == "notes.jpg"
    _source(1).save(folder / "notes.jpg", format="JPEG")  # the person fixes the file
    fixed = tiny_lib.add_folders([folder])
    assert fixed.skipped == {} and fixed.embedded == 1
    assert tiny_lib.status().skipped == []
