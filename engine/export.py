"""Copying photos out of the library: a selection of results to a folder of the person's choice.

Nothing is ever overwritten: a name already taken in the folder gets " (2)", " (3)"… before its
extension, as file managers do. A photo that cannot be copied (gone, unreadable, a full disk) is
reported with its reason and the others are still copied. Each copy is written beside its final
name and renamed into place, so a copy that fails halfway leaves no partial file.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LibraryError


@dataclass
class CopyReport:
    copied: list[tuple[str, str]] = field(default_factory=list)  # (photo, its copy)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (photo, why)

    def summary(self) -> str:
        text = f"Copied {len(self.copied):,} photo{'s' if len(self.copied) != 1 else ''}"
        if self.failed:
            path, why = self.failed[0]
            more = f" and {len(self.failed) - 1:,} more" if len(self.failed) > 1 else ""
            text += f"; could not copy {os.path.basename(path)}{more} ({why})"
        return text


def free_name(folder: Path, name: str, taken: set[str]) -> Path:
    """``folder/name``, or the first of ``name (2).ext``, ``name (3).ext``… not yet used."""
    stem, ext = os.path.splitext(name)
    candidate, n = name, 1
    while candidate in taken or (folder / candidate).exists():
        n += 1
        candidate = f"{stem} ({n}){ext}"
    return folder / candidate


def copy_photos(paths: Iterable[str], folder: str | Path,
                progress: Callable[[int, int], None] | None = None) -> CopyReport:
    """Copy the photos (with their dates) into ``folder``, never replacing a file there."""
    target = Path(folder).expanduser()
    if not target.is_dir():
        raise LibraryError(f"no such folder: {target}")
    paths = list(dict.fromkeys(paths))  # the same photo selected twice is copied once
    report = CopyReport()
    taken: set[str] = set()
    for done, path in enumerate(paths, 1):
        source = Path(path)
        try:
            if target.resolve() == source.parent.resolve():
                raise LibraryError("it is already in that folder")
            if not source.is_file():
                raise LibraryError("the file is no longer there")
            dest = free_name(target, source.name, taken)
            taken.add(dest.name)
            tmp = dest.with_name(f".{dest.name}.copying")
            try:
                shutil.copy2(source, tmp)
                os.replace(tmp, dest)  # not os.rename: the same on every system
            finally:
                tmp.unlink(missing_ok=True)
            report.copied.append((str(source), str(dest)))
        except (OSError, LibraryError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            report.failed.append((str(source), why))
        if progress is not None:
            progress(done, len(paths))
    return report
