"""Images as queries: files dropped or pasted, and clipboard pixels saved for the engine."""

from __future__ import annotations

import os
import time
from pathlib import Path

from PySide6.QtCore import QMimeData
from PySide6.QtGui import QImage

from engine.config import IMAGE_EXTENSIONS

KEEP_PASTED = 20  # pasted images kept in the cache; older ones are removed


def is_image_file(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS and os.path.isfile(path)


def image_file_from_mime(mime: QMimeData) -> str | None:
    """The first local image file a drop or the clipboard carries, if any."""
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile() and is_image_file(url.toLocalFile()):
            return url.toLocalFile()
    return None


def pixels_from_mime(mime: QMimeData) -> QImage | None:
    """Image pixels (a screenshot, an image copied from a browser), if the data holds any."""
    if not mime.hasImage():
        return None
    image = QImage(mime.imageData())
    return None if image.isNull() else image


def can_query(mime: QMimeData) -> bool:
    return image_file_from_mime(mime) is not None or mime.hasImage()


def save_pasted(image: QImage, folder: Path) -> str:
    """Write clipboard pixels to a PNG the engine can read; runs in a worker."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"pasted-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6}.png"
    if not image.save(str(path), "PNG"):
        raise OSError(f"cannot save the pasted image in {folder}")
    old = sorted(folder.glob("pasted-*.png"), key=lambda p: p.stat().st_mtime)
    for stale in old[:-KEEP_PASTED]:
        stale.unlink(missing_ok=True)
    return str(path)
