"""The one reader of ``image,caption`` CSV files, behind both ``captions import --csv`` and
``chikaku eval``, so a file one accepts the other accepts too.

A UTF-8 byte-order mark (what spreadsheet programs put first) is accepted. A path that is not a
regular file (a folder, a FIFO that would never end, a device), a file over CAPTION_FILE_LIMIT,
text that is not UTF-8 or holds NUL bytes, a malformed row or a missing header row is a
DatasetError naming the file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .errors import DatasetError
from .readlimit import MB, read_text

COLUMNS = ("image", "caption")
# Far above any real caption file (COCO's 600,000 training captions take 90 MB as JSON), far
# below what would exhaust memory: a bigger file is refused before it is read.
CAPTION_FILE_LIMIT = 256 * MB


TRAIN_FRACTION = 0.8


def split_names(rows: list[tuple[str, str]], split: str) -> list[str]:
    """The fixed split of a captioned data set, the same for `captions import --split` and
    `chikaku eval`: the sorted names of images with at least one caption, first 80% train, the
    rest test ("all": every one)."""
    names = sorted({n.strip() for n, t in rows if n.strip() and t.strip()})
    cut = int(round(len(names) * TRAIN_FRACTION))
    chosen = {"train": names[:cut], "test": names[cut:], "all": names}.get(split)
    if chosen is None:
        raise DatasetError(f"unknown split {split!r}: use train, test or all")
    return chosen


def read_image_captions(path: Path | str) -> list[tuple[str, str]]:
    """Every (image, caption) row in file order, as written (empty cells as "")."""
    path = Path(path)
    try:
        text = read_text(path, CAPTION_FILE_LIMIT, encoding="utf-8-sig")
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise DatasetError(f"cannot read {path}: {e}") from e
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or not set(COLUMNS) <= set(reader.fieldnames):
            raise DatasetError(f"{path} needs a header row with the columns image,caption")
        return [(r.get("image") or "", r.get("caption") or "") for r in reader]
    except csv.Error as e:
        raise DatasetError(f"cannot read {path}: {e}") from e
