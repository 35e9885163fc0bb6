"""Caption importers: CSV, COCO captions JSON, sidecar text files, and the description already
inside a photo (EXIF ImageDescription / XPComment, XMP dc:description).

Each import reports how many photos matched, how many captions were added, and every row it did
not import with the reason. Captions are never duplicated on the same photo.

A name with folders in it (``/photos/2019/a.jpg``, ``2019/a.jpg``, ``../trip/a.jpg``) names that
photo only: an absolute path must be the photo's path; a relative one is read from the caption
file's folder, else as the end of the photo's path (never with ``..``). A bare file name matches
the library's one photo of that name. Names compare in Unicode NFC, so a name written decomposed
(as macOS writes it) finds the file. Control characters and terminal escape sequences never reach
a caption.
"""

from __future__ import annotations

import functools
import html
import io
import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from .csvrows import CAPTION_FILE_LIMIT, read_image_captions, split_names
from .errors import DatasetError
from .readlimit import MB, read_bytes, read_text

if TYPE_CHECKING:
    from .library import Library

# Descriptions cameras write by themselves: not captions a person wrote.
CAMERA_BOILERPLATE = re.compile(
    r"^(olympus digital camera|sony dsc|default|image|picture|photo|untitled|"
    r"digital camera|camera|dsc\w*|img[_\- ]?\d*|\s*)$", re.I)
MAX_CAPTION = 2000
SIDECAR_LIMIT = 1 * MB  # hundreds of captions of MAX_CAPTION characters; a bigger one is refused
# Terminal escape sequences (CSI, OSC, two-byte ESC) and C0/C1 control characters.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?"
                      r"|[\x00-\x1f\x7f-\x9f]")
NO_PHOTO_AT_PATH = "no photo at this path in the library"


@dataclass
class ImportReport:
    source: str
    photos_matched: int = 0
    captions_added: int = 0
    duplicates: int = 0
    # (name, reason) for every row not imported: no such photo, or a caption that is not text
    unmatched: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.source}: {self.captions_added} captions added to "
                f"{self.photos_matched} photos, {self.duplicates} already there, "
                f"{len(self.unmatched)} not matched")


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


class _Matcher:
    """Finds the library photo a name refers to: a full path, a relative path or a file name."""

    def __init__(self, lib: Library, base: Path | None = None) -> None:
        rows = lib.catalog.searchable_photo_paths()
        self.base = os.path.realpath(base) if base is not None else None
        self.by_path: dict[str, int | None] = {}  # None: two files whose names differ only in form
        self.by_name: dict[str, list[tuple[int, str]]] = {}
        for i, p in rows:
            key = _nfc(p)
            self.by_path[key] = None if key in self.by_path else i
            self.by_name.setdefault(os.path.basename(key), []).append((i, key))

    def _at(self, path: str) -> tuple[int | None, str] | None:
        if path not in self.by_path:
            return None
        pid = self.by_path[path]
        return (pid, "") if pid is not None else (None, "ambiguous: two photos have this path")

    def find(self, name: str) -> tuple[int | None, str]:
        name = _nfc(name.strip().replace("\\", "/"))
        while name.startswith("./"):
            name = name[2:]
        if not os.path.basename(name):
            return None, "no file name"
        if "/" not in name:
            return self._by_file_name(name)
        if os.path.isabs(name):
            return self._at(os.path.normpath(name)) or (None, NO_PHOTO_AT_PATH)
        if self.base is not None:
            found = self._at(os.path.normpath(os.path.join(self.base, name)))
            if found is not None:
                return found
        rel = os.path.normpath(name)
        if rel.split("/")[0] == "..":  # outside the caption file's folder: nothing else fits
            return None, NO_PHOTO_AT_PATH
        ending = "/" + rel
        candidates = [c for c in self.by_name.get(os.path.basename(rel), [])
                      if c[1].endswith(ending)]
        if len(candidates) == 1:
            return candidates[0][0], ""
        if not candidates:
            return None, NO_PHOTO_AT_PATH
        return None, f"ambiguous: {len(candidates)} photos in the library have this path ending"

    def _by_file_name(self, name: str) -> tuple[int | None, str]:
        candidates = self.by_name.get(name, [])
        if len(candidates) == 1:
            return candidates[0][0], ""
        if not candidates:
            return None, "no photo with this name in the library"
        return None, f"ambiguous: {len(candidates)} photos in the library have this name"


def _clean(text: str) -> str | None:
    text = " ".join(_CONTROL.sub(" ", _nfc(str(text))).split())
    if not text or CAMERA_BOILERPLATE.match(text):
        return None
    return text[:MAX_CAPTION]


def _store(lib: Library, pairs: dict[int, list[str]], report: ImportReport, source: str) -> None:
    added = lib.catalog.add_new_captions(pairs, source)
    for pid, texts in pairs.items():
        report.captions_added += added[pid]
        report.duplicates += len(texts) - added[pid]
        report.photos_matched += bool(texts)


def _collect(lib: Library, rows, report: ImportReport, base: Path | None = None
             ) -> dict[int, list[str]]:
    """Captions by photo id; ``base``: the folder relative names start from."""
    matcher, pairs, bad = _Matcher(lib, base), {}, {}
    for name, text in rows:
        text = _clean(text)
        if text is None:
            continue
        pid, why = matcher.find(name)
        if pid is None:
            bad.setdefault(name, why)
            continue
        pairs.setdefault(pid, []).append(text)
    report.unmatched.extend(sorted(bad.items()))
    return pairs


def _changes_library(importer):
    """An import holds the library's writer lock from matching names to storing captions, so
    no photo can leave in between (another process is refused while it runs)."""
    @functools.wraps(importer)
    def locked(lib: Library, *args, **kwargs) -> ImportReport:
        with lib.writer.hold("importing captions"):
            return importer(lib, *args, **kwargs)

    return locked


@_changes_library
def import_csv(lib: Library, path: Path | str, split: str | None = None) -> ImportReport:
    """Rows of ``image,caption`` (a header row naming both). ``split`` keeps only the train or
    test part (sorted image names, first 80% train), as ``chikaku eval`` splits them."""
    path = Path(path)
    report = ImportReport(f"CSV {path.name}")
    rows = read_image_captions(path)
    if split is not None:
        keep = set(split_names(rows, split))
        rows = [r for r in rows if r[0].strip() in keep]
    _store(lib, _collect(lib, rows, report, path.parent), report, "csv")
    return report


@_changes_library
def import_coco(lib: Library, path: Path | str) -> ImportReport:
    """COCO captions JSON: ``images`` (id, file_name) and ``annotations`` (image_id, caption)."""
    path = Path(path)
    report = ImportReport(f"COCO {path.name}")
    try:
        data = json.loads(read_text(path, CAPTION_FILE_LIMIT))
        files = {img["id"]: img["file_name"] for img in data["images"]}
        rows = []
        for ann in data["annotations"]:
            name = files.get(ann["image_id"])
            if name is None:
                report.unmatched.append((str(ann["image_id"]), "annotation for an image id "
                                         "that is not in the file's images list"))
                continue
            caption = ann["caption"]
            if not isinstance(caption, str):  # never stored as the text "None" or "['a', 'b']"
                report.unmatched.append((str(name), f"the caption is {_json_kind(caption)}, "
                                         "not text"))
                continue
            rows.append((str(name), caption))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:  # nested too deep
        raise DatasetError(f"cannot read {path}: {e}") from e
    except (KeyError, TypeError) as e:
        raise DatasetError(f"{path} is not COCO captions JSON (missing {e})") from e
    _store(lib, _collect(lib, rows, report, path.parent), report, "coco")
    return report


def _json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return "a list" if isinstance(value, list) else "an object"


@_changes_library
def import_sidecars(lib: Library) -> ImportReport:
    """``IMG_1234.jpg.txt`` or ``IMG_1234.txt`` beside a photo: one caption a line."""
    report = ImportReport("sidecar text files")
    pairs: dict[int, list[str]] = {}
    roots = [r.rstrip(os.sep) + os.sep for r in lib.folders()]
    for pid, path in _photos(lib):
        for side in (Path(path + ".txt"), Path(path).with_suffix(".txt")):
            if not os.path.lexists(side):
                continue
            if not os.path.realpath(side).startswith(tuple(roots)):
                report.unmatched.append((str(side), "a link to a file outside the library's "
                                         "folders: not followed"))
                continue
            try:
                lines = read_text(side, SIDECAR_LIMIT).splitlines()
            except OSError as e:
                report.unmatched.append((str(side), f"cannot read: {e.strerror or e}"))
                continue
            except UnicodeDecodeError as e:
                report.unmatched.append((str(side), f"cannot read: {e}"))
                continue
            texts = [t for t in map(_clean, lines) if t]
            if texts:
                pairs.setdefault(pid, []).extend(texts)
    _store(lib, pairs, report, "sidecar")
    return report


def embedded_descriptions(data: bytes) -> list[str]:
    """Descriptions written inside an image file's metadata."""
    out: list[str] = []
    try:
        with Image.open(io.BytesIO(data)) as im:
            exif = im.getexif()
            desc = exif.get(0x010E)
            xp = exif.get(0x9C9C)
            xmp = im.info.get("xmp") or b""
    except Exception:
        return out
    if isinstance(desc, bytes):
        desc = desc.decode("utf-8", "replace")
    if desc:
        out.append(str(desc).strip("\x00 "))
    if isinstance(xp, (bytes, tuple, list)):
        raw = bytes(xp)
        out.append(raw.decode("utf-16-le", "replace").strip("\x00 "))
    if isinstance(xmp, str):
        xmp = xmp.encode()
    for block in _elements(xmp, b"dc:description"):
        items = _elements(block, b"rdf:li") or [block]
        for item in items:
            out.append(html.unescape(item.decode("utf-8", "replace")).strip())
    seen, unique = set(), []
    for t in out:
        c = _clean(t)
        if c and c not in seen:
            seen.add(c)
            unique.append(c)
    return unique


def _elements(xml: bytes, tag: bytes) -> list[bytes]:
    """The contents of each ``<tag ...>...</tag>``, in one pass over the bytes (a pattern that
    looks for each opening tag's end from there on is quadratic on a file of opening tags)."""
    found, pos, opening, closing = [], 0, b"<" + tag, b"</" + tag + b">"
    while (start := xml.find(opening, pos)) >= 0:
        body = xml.find(b">", start + len(opening))
        end = xml.find(closing, body + 1) if body >= 0 else -1
        if end < 0:  # no later opening tag can be closed either
            break
        found.append(xml[body + 1 : end])
        pos = end + len(closing)
    return found


@_changes_library
def import_embedded(lib: Library) -> ImportReport:
    report = ImportReport("descriptions inside the photos (EXIF, XMP)")
    pairs: dict[int, list[str]] = {}
    for pid, path in _photos(lib):
        try:
            head = read_bytes(path, MB, head=True)  # metadata lives at the start of the file
        except OSError as e:
            report.unmatched.append((path, f"cannot read: {e.strerror or e}"))
            continue
        texts = embedded_descriptions(head)
        if texts:
            pairs[pid] = texts
    _store(lib, pairs, report, "exif")
    return report


def _photos(lib: Library) -> list[tuple[int, str]]:
    return lib.catalog.searchable_photo_paths()
