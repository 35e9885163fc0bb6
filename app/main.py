"""Start the desktop app: logging, the Qt application, and the main window (shown at once; the
library and its model load in the background)."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

log = logging.getLogger("app")


def _log_file() -> Path:
    from platformdirs import user_log_dir

    return Path(user_log_dir("chikaku", appauthor=False)) / "chikaku.log"


def setup_logging(level: int = logging.INFO) -> None:
    """Warnings and errors (with tracebacks) to stderr and to a rotating log file."""
    root = logging.getLogger()
    if root.handlers:
        return
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    console.setFormatter(fmt)
    root.addHandler(console)
    try:
        path = _log_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=1_000_000, backupCount=2,
                                                       encoding="utf-8")
    except OSError as e:
        log.warning("cannot write a log file: %s", e)
        return
    handler.setFormatter(fmt)
    root.addHandler(handler)


def run() -> int:
    setup_logging()
    from PySide6.QtWidgets import QApplication

    from .icons import APP_ID, app_icon
    from .window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Chikaku")
    app.setApplicationDisplayName("Chikaku")
    app.setOrganizationName("Chikaku")
    app.setDesktopFileName(APP_ID)  # ties the window to the installed desktop entry
    app.setWindowIcon(app_icon())
    window = MainWindow()
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(run())
