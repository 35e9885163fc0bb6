"""Walk photo folders: images by extension, junk and hidden entries left out, loops caught.

Symlinked folders are followed once; a link back into a folder already being walked is reported
as a symlink loop. Unreadable folders and broken links are reported, never fatal. Empty folders are
noted with their modification time, so the indexer can tell an unplugged disk's mount point from a
folder whose photos were deleted.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import IMAGE_EXTENSIONS, JUNK_NAMES
from .fsinfo import mount_table, system_filesystem


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    files: dict[str, FileEntry] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # path -> reason
    # Folders that listed nothing at all (not even hidden entries) -> their mtime_ns: an
    # unplugged disk's mount point looks like this.
    empty: dict[str, int] = field(default_factory=dict)


def is_excluded(name: str, exclude_globs: tuple[str, ...] = ()) -> bool:
    if name.startswith(".") or name in JUNK_NAMES:  # hidden, ._AppleDouble, .thumbnails
        return True
    return any(fnmatch.fnmatch(name, g) for g in exclude_globs)


def excluded_below(path: str, folder: str, exclude_globs: tuple[str, ...]) -> bool:
    """Whether a pattern takes out the photo at ``path`` inside the library folder ``folder``:
    its name or the name of a folder between them matches one (as a scan would skip it)."""
    rel = os.path.relpath(path, folder)
    return any(fnmatch.fnmatch(part, g) for part in rel.split(os.sep) for g in exclude_globs)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def clamp_ns(ns: int) -> int:
    """A file time in nanoseconds as the catalog can keep it (64 bits: years 1677 to 2262); a
    file system may hold any date from year 1 to far beyond 9999."""
    return min(max(ns, -(2**63)), 2**63 - 1)


def is_utf8(name: str) -> bool:
    """False for names holding bytes that are not UTF-8 (Python gives them as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_path(path: str) -> str:
    """A path that can be printed and stored: bytes that are not UTF-8 written as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def scan(roots: list[Path], exclude_globs: tuple[str, ...] = (),
         exclude_dirs: tuple[Path, ...] = ()) -> ScanResult:
    result = ScanResult()
    skip = {os.path.realpath(d) for d in exclude_dirs}
    mounts = mount_table()  # /proc, /sys, /dev ... are never walked, even from /
    for root in roots:
        _walk(Path(root), result, exclude_globs, skip, mounts)
    return result


def _walk(root: Path, result: ScanResult, globs: tuple[str, ...], skip: set[str],
          mounts: list[tuple[str, str]] = ()) -> None:
    stack: list[tuple[str, frozenset[tuple[int, int]]]] = []
    try:
        st = os.stat(root)
    except OSError as e:
        result.problems[str(root)] = f"folder cannot be read: {e.strerror or e}"
        return
    stack.append((str(root), frozenset({(st.st_dev, st.st_ino)})))
    while stack:
        folder, ancestors = stack.pop()
        real = os.path.realpath(folder)
        if real in skip:
            continue
        if fstype := system_filesystem(real, mounts, resolved=True):
            if folder == str(root):  # added by an older version: say how to take it out
                result.problems[folder] = (
                    f"a system folder ({fstype} file system), not photos: it is not walked "
                    "(take it out of the library with `chikaku folders remove PATH`)")
            continue
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except PermissionError:
            result.problems[folder] = "permission denied: the folder cannot be listed"
            continue
        except OSError as e:
            result.problems[folder] = f"folder cannot be listed: {e.strerror or e}"
            continue
        if not entries:
            try:
                result.empty[folder] = os.stat(folder).st_mtime_ns
            except OSError as e:  # gone since it was listed: nothing can be said about it
                result.problems[folder] = f"folder cannot be read: {e.strerror or e}"
        for entry in entries:
            if is_excluded(entry.name, globs):
                continue
            _visit(entry, ancestors, stack, result, globs)


def _visit(entry: os.DirEntry, ancestors, stack, result: ScanResult, globs) -> None:
    path = entry.path
    try:
        is_dir = entry.is_dir(follow_symlinks=True)
    except OSError as e:  # ELOOP on a self-referencing link
        result.problems[shown_path(path)] = f"symlink loop: {e.strerror or e}"
        return
    if (is_dir or is_image_name(entry.name)) and not is_utf8(entry.name):
        what = "folder" if is_dir else "file"
        result.problems[shown_path(path)] = (
            f"the {what} name is not valid UTF-8, so the catalog cannot keep it: rename the "
            f"{what} to index {'the photos in it' if is_dir else 'it'}")
        return
    if is_dir:
        try:
            st = os.stat(path)
        except OSError as e:
            result.problems[path] = _stat_reason(e, entry)
            return
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            result.problems[path] = "symlink loop: links back to a folder that contains it"
            return
        stack.append((path, ancestors | {key}))
        return
    if not is_image_name(entry.name):
        return
    try:
        st = entry.stat(follow_symlinks=True)
    except OSError as e:
        result.problems[path] = _stat_reason(e, entry)
        return
    if not entry.is_file(follow_symlinks=True):
        return
    result.files[path] = FileEntry(path, st.st_size, clamp_ns(st.st_mtime_ns))


def _stat_reason(e: OSError, entry: os.DirEntry) -> str:
    if entry.is_symlink() and isinstance(e, FileNotFoundError):
        return "broken symlink: its target does not exist"
    if isinstance(e, FileNotFoundError):
        return "file vanished while the folder was being scanned"
    if isinstance(e, PermissionError):
        return "permission denied"
    return f"cannot read: {e.strerror or e}"
