"""The one reader of ``image,caption`` CSV files, behind both ``captions import --csv`` and
``chikaku eval``, so a file one accepts the other accepts too.

A UTF-8 byte-order mark (what spreadsheet programs put first) is accepted. A path that is not a
regular file (a folder, a FIFO that would never end), text that is not UTF-8, a malformed row or a
missing header row is a DatasetError naming the file.
"""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

from .errors import DatasetError

COLUMNS = ("image", "caption")


def read_image_captions(path: Path | str) -> list[tuple[str, str]]:
    """Every (image, caption) row in file order, as written (empty cells as "")."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from e
    if not stat.S_ISREG(mode):
        raise DatasetError(f"cannot read {path}: not a regular file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not set(COLUMNS) <= set(reader.fieldnames):
                raise DatasetError(f"{path} needs a header row with the columns image,caption")
            return [(r.get("image") or "", r.get("caption") or "") for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"cannot read {path}: {e}") from e
