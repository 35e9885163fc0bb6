"""Reading a small file a person pointed at (captions, sidecars, settings, a checkpoint's config)
as bad input is read: only a regular file, never more than a limit, and without waiting.

A FIFO would block the reader until some other program writes to it, a device such as /dev/zero
never ends, and a file can be far larger than its purpose (or grow while it is read); a
pseudo-file such as those under /proc says it holds 0 bytes and then gives more. Each is refused
with an ``OSError`` whose text says why, so callers that already report unreadable files report
these too. The file is opened without blocking and checked on the opened descriptor, so it cannot
be swapped between the check and the read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MB = 1 << 20
_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


class NotReadable(OSError):
    """A path that is not a regular file, or a file over its limit: the text says which."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n / MB:.0f} MB" if n >= MB else f"{n} bytes"


def read_bytes(path: Path | str, limit: int, *, head: bool = False) -> bytes:
    """The file's bytes, at most ``limit`` of them. A longer file is refused, unless ``head``:
    then its first ``limit`` bytes are what is wanted (metadata at the start of a photo)."""
    fd = os.open(path, _FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotReadable(f"{_kind(mode)}, not a file Chikaku can read")
        size = os.fstat(fd).st_size
        if size > limit and not head:
            raise NotReadable(f"{_size(size)}, more than the {_size(limit)} such a file may "
                              "hold")
        chunks, total = [], 0
        while total <= limit:  # size may be wrong (a pseudo-file) or grow meanwhile
            chunk = os.read(fd, min(limit + 1 - total, 4 * MB))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        if head:
            return data[:limit]
        raise NotReadable(f"more than the {_size(limit)} such a file may hold (it grew while "
                          "it was read)")
    return data


def read_text(path: Path | str, limit: int, encoding: str = "utf-8") -> str:
    """The file as text. Text holding NUL bytes is refused as binary (or as UTF-16, which this
    is not): an empty sparse file, an image or an archive given by mistake."""
    data = read_bytes(path, limit)
    if b"\x00" in data:
        raise NotReadable("not a text file (it holds NUL bytes: binary data, or text saved as "
                          "UTF-16 rather than UTF-8)")
    return data.decode(encoding)
