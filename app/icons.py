"""The application icon, from the PNGs rendered out of resources/icons/chikaku.svg."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QSize
from PySide6.QtGui import QIcon

APP_ID = "io.github.chikaku.Chikaku"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def icons_dir() -> Path | None:
    """The folder holding chikaku-<size>.png: in the frozen bundle, else in the source tree."""
    candidates = []
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        candidates.append(Path(frozen_root) / "resources" / "icons")
    candidates.append(Path(__file__).resolve().parent.parent / "resources" / "icons")
    for folder in candidates:
        if (folder / "chikaku-256.png").is_file():
            return folder
    return None


def app_icon() -> QIcon:
    """Every size of the icon, so Qt picks a sharp one for the title bar, taskbar and dock.

    Falls back to the icon theme (the desktop entry's icon, once installed) when the PNGs are
    not beside the code, e.g. in an installed wheel.
    """
    icon = QIcon()
    folder = icons_dir()
    if folder is not None:
        for size in ICON_SIZES:
            path = folder / f"chikaku-{size}.png"
            if path.is_file():
                icon.addFile(str(path), QSize(size, size))
    if icon.isNull():
        icon = QIcon.fromTheme(APP_ID)
    return icon
