"""Thumbnails: decoded off the UI thread, kept in a disk cache, handed over as QImages.

The disk cache lives in ``<library>/cache/thumbs``; an entry's name is a hash of the photo's
path, modification time and size, so an edited photo gets a new thumbnail. Workers make
``QImage``s only; the loader turns them into icons on the UI thread. Each new query starts a new
generation: requests from an older one are skipped before they decode, and their results are
dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap

from .workers import Jobs

THUMB_SIDE = 256  # on disk, for icons up to this many physical pixels
LARGE_THUMB_SIDE = 512  # on disk, for larger icons (big thumbnails, HiDPI screens)
ICON_SIDE = 160  # the default icon, in logical pixels: a square, the photo centred in it
ICON_SIDES = (96, 128, 160, 208, 256)  # the thumbnail sizes a person can choose
MEMORY_ITEMS = 1000  # icons kept in memory (100 KB each at 160 physical pixels)
PER_JOB = 4  # thumbnails a worker makes in one go
# How much lower than the interface the threads making icons run (Linux's nice scale): a scroll's
# frames come first, and the icons take the cores' remaining time (on 2 cores, scrolling's p95
# frame 18.8 -> 9-10 ms: tests/bench/bench_home.py).
WORKER_NICENESS = 10


def _yield_to_the_interface() -> None:
    """Set this worker thread's priority to WORKER_NICENESS below the process's (Linux;
    elsewhere it keeps the default). Absolute rather than a step down each time: Qt's pool
    threads may run each job with a new Python thread state, so nothing marks a thread as done."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):
        tid = threading.get_native_id()
        wanted = min(19, _INTERFACE_NICENESS + WORKER_NICENESS)
        if os.getpriority(os.PRIO_PROCESS, tid) < wanted:
            os.setpriority(os.PRIO_PROCESS, tid, wanted)


# the interface thread's priority: the process's, read when the app imports this module
_INTERFACE_NICENESS = os.getpriority(os.PRIO_PROCESS, 0) if sys.platform.startswith("linux") \
    else 0


def disk_side(pixels: int) -> int:
    """The thumbnail kept on disk for an icon this many physical pixels wide."""
    return THUMB_SIDE if pixels <= THUMB_SIDE else LARGE_THUMB_SIDE


def to_qimage(im) -> QImage:
    """A Pillow RGB image as a QImage that owns its pixels (safe to pass between threads)."""
    im = im.convert("RGB") if im.mode != "RGB" else im
    data = im.tobytes()
    w, h = im.size
    return QImage(data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def cache_file(cache_dir: Path, path: str, side: int = THUMB_SIDE) -> Path:
    st = os.stat(path)
    size = "" if side == THUMB_SIDE else f"\0{side}"  # the first size keeps its old names
    key = hashlib.blake2b(f"{path}\0{st.st_mtime_ns}\0{st.st_size}{size}".encode(),
                          digest_size=16).hexdigest()
    return cache_dir / key[:2] / f"{key}.jpg"


def load_thumbnail(path: str, cache_dir: Path | None, side: int = THUMB_SIDE) -> QImage:
    """The photo's thumbnail from the disk cache, or decoded (upright) and cached. Runs in a
    worker; raises engine.errors.BadImage or OSError for a photo that cannot be shown."""
    return to_qimage(thumbnail(path, cache_dir, side))


def thumbnail(path: str, cache_dir: Path | None, side: int = THUMB_SIDE):
    """``load_thumbnail`` as a Pillow image (RGB)."""
    from PIL import Image

    from engine.imageio import open_upright

    target = cache_file(cache_dir, path, side) if cache_dir is not None else None
    if target is not None and target.is_file():
        try:
            with Image.open(target) as cached:
                return cached.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            pass  # a damaged cache file: made again below
    im = open_upright(Path(path), max_side=side)
    if target is not None:
        # The cache only saves time: a read-only or full disk just means decoding again.
        with contextlib.suppress(OSError):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.stem}.{threading.get_ident()}.tmp")
            im.save(tmp, "JPEG", quality=85)
            os.replace(tmp, target)
    return im


def icon_image(path: str, cache_dir: Path | None, pixels: int) -> QImage:
    """A photo's icon: its thumbnail fitted into a transparent square of ``pixels``. Decoded
    and scaled by Pillow, which lets go of the interpreter lock while it works, so the grid
    keeps painting while workers make icons (Qt's decoding and scaling in a worker held it)."""
    from PIL import Image

    im = thumbnail(path, cache_dir, disk_side(pixels))
    w, h = im.size
    scale = min(pixels / w, pixels / h)
    fitted = im.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                       Image.Resampling.BICUBIC, reducing_gap=2.0)
    square = Image.new("RGBA", (pixels, pixels), (0, 0, 0, 0))
    square.paste(fitted, ((pixels - fitted.width) // 2, (pixels - fitted.height) // 2))
    # BGRA bytes are Qt's ARGB32 on a little-endian machine; with alpha 0 or 255 everywhere the
    # premultiplied form is the same pixels, so the pixmap needs no conversion
    data = square.tobytes("raw", "BGRA" if sys.byteorder == "little" else "ARGB")
    return QImage(data, pixels, pixels, 4 * pixels,
                  QImage.Format.Format_ARGB32_Premultiplied).copy()


class ThumbnailLoader(QObject):
    """Hands out icons; asks a worker for each missing one at most once per generation."""

    ready = Signal(str)  # a photo path whose icon is now available

    def __init__(self, jobs: Jobs, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.cache_dir: Path | None = None
        self.generation = 0
        self.requested = 0  # thumbnail jobs asked for, ever (the 10,000-results test reads it)
        self.side = ICON_SIDE  # logical pixels
        self.ratio = 1.0  # the screen's device pixel ratio
        # path -> its pixmap: the grid's cells draw it; an icon is made when one is asked for
        self._icons: OrderedDict[str, QPixmap] = OrderedDict()
        self._pending: set[str] = set()
        self._queued: list[str] = []  # asked for during this paint, handed out after it
        self._failed: set[str] = set()

    def new_generation(self) -> None:
        """A new query: anything still queued for the old one is no longer wanted."""
        self.generation += 1
        self._pending.clear()

    @property
    def pixels(self) -> int:
        """An icon's side in physical pixels: sharp on a HiDPI screen."""
        return max(1, round(self.side * self.ratio))

    def set_size(self, side: int, ratio: float | None = None) -> None:
        """Icons of another size (or for a screen of another pixel ratio): those made so far
        are dropped and the visible ones asked for again."""
        ratio = self.ratio if ratio is None else max(1.0, float(ratio))
        if (side, ratio) == (self.side, self.ratio):
            return
        self.side, self.ratio = side, ratio
        self._icons.clear()
        self._failed.clear()
        self.new_generation()

    def icon(self, path: str) -> QIcon | None:
        """The icon if it is ready; otherwise None, and a worker is asked for it."""
        made = self._made(path)
        return None if made is None else QIcon(made)

    def pixmap(self, path: str) -> QPixmap | None:
        """The icon's pixmap if it is ready; otherwise None, and a worker is asked for it."""
        return self._made(path)

    def _made(self, path: str) -> QPixmap | None:
        made = self._icons.get(path)
        if made is not None:
            self._icons.move_to_end(path)
            return made
        if path not in self._pending and path not in self._failed:
            self._request(path)
        return None

    def failed(self, path: str) -> bool:
        return path in self._failed

    def refresh(self, paths) -> None:
        """Photos that may have changed on disk (edited in place): those with an icon are
        loaded again, the old icon shown until the new one arrives (an unchanged photo comes
        from the disk cache, whose key names the file's size and time)."""
        for path in paths:
            if path in self._icons or path in self._failed:
                self._failed.discard(path)
                if path not in self._pending:
                    self._request(path)

    def _request(self, path: str) -> None:
        """Asked for while cells paint: gathered, and handed to workers a few at a time once
        the paint is over (starting a worker costs the interface thread most of a millisecond,
        and a scroll reveals a dozen cells at once)."""
        self._pending.add(path)
        self.requested += 1
        self._queued.append(path)
        if len(self._queued) == 1:
            QTimer.singleShot(0, self._hand_out)

    def _hand_out(self) -> None:
        queued, self._queued = self._queued, []
        # a new query dropped the others from the pending ones; one may be asked for twice
        paths = [p for p in dict.fromkeys(queued) if p in self._pending]
        gen = self.generation
        for i in range(0, len(paths), PER_JOB):
            chunk = paths[i : i + PER_JOB]
            self.jobs.submit(self._work_many, chunk, gen, name="thumbnails", lane="thumbs",
                             log_failures=False,
                             done=lambda made, gen=gen: self._arrived_many(gen, made),
                             failed=lambda _exc, chunk=chunk, gen=gen: self._broken_many(
                                 gen, chunk))

    def _work_many(self, paths: list[str], gen: int
                   ) -> list[tuple[str, QImage | None, bool]]:
        """(path, image, made) for each path: a photo that cannot be read is not made, and the
        others still are."""
        _yield_to_the_interface()
        made = []
        for path in paths:
            try:
                made.append((path, self._work(path, gen), True))
            except Exception:  # noqa: BLE001 (any unreadable photo: its cell says so)
                made.append((path, None, False))
        return made

    def _work(self, path: str, gen: int) -> QImage | None:
        if gen != self.generation:  # the person has moved on to another query
            return None
        return icon_image(path, self.cache_dir, self.pixels)

    def _arrived_many(self, gen: int, made: list[tuple[str, QImage | None, bool]]) -> None:
        for path, image, ok in made:
            if ok:
                self._arrived(path, gen, image)
            else:
                self._broken(path, gen)

    def _broken_many(self, gen: int, paths: list[str]) -> None:
        for path in paths:
            self._broken(path, gen)

    def _arrived(self, path: str, gen: int, image: QImage | None) -> None:
        if gen != self.generation or image is None:
            return
        self._pending.discard(path)
        pixmap = QPixmap.fromImage(image)
        pixmap.setDevicePixelRatio(image.width() / self.side)  # drawn at its logical size
        self._icons[path] = pixmap
        while len(self._icons) > MEMORY_ITEMS:
            self._icons.popitem(last=False)
        self.ready.emit(path)

    def _broken(self, path: str, gen: int) -> None:
        if gen != self.generation:
            return
        self._pending.discard(path)
        self._failed.add(path)
        self.ready.emit(path)
