"""Replacing a file so that a crash or a full disk leaves either the old file or the new one,
never half of one: write a temporary file beside it, flush it to the disk, rename it over the
old one, then flush the folder so the rename itself survives a power cut."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` writes the whole content to the path ``tmp`` (in the same folder, so the
    rename cannot cross file systems); it then replaces ``path``. On any failure the temporary
    file is removed (on a full disk it would only fill it more) and the error goes to the
    caller, with ``path`` as it was."""
    path = Path(path)
    # Named for this process and thread: two writers of one file never share a temporary file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_folder(path.parent)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the system allows it (Windows and some file
    systems refuse to open or flush a folder; the rename is atomic all the same)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
