"""Save screenshots of the app for the README: the main window with results, and the settings.

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m tests.app.screenshots [--library DIR]

Without --library it builds a throw-away library (the bundled model over 60 photos of the shared
data set, captioned from its captions.csv) in a temporary folder, so no thumbnail of a data-set
photo is left anywhere but in the two PNGs, which are reduced to a small palette.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "resources" / "screenshots"
QUERY = "a dog running through the snow"
MAX_BYTES = 300_000


def wait(app, condition, timeout: float = 600.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the app did not get there in time")
        app.processEvents()
        time.sleep(0.01)


def build_library(folder: Path):
    from engine import captions
    from engine.library import Library
    from tests.conftest import DATASET, dataset_images

    photos = folder / "photos"
    photos.mkdir()
    for p in dataset_images()[:60]:
        shutil.copy2(p, photos / p.name)
    lib = Library.open(folder / "library", device="cpu")
    lib.add_folders([photos])
    captions.import_csv(lib, DATASET / "captions.csv")
    return lib


def save_small(widget, path: Path) -> None:
    """Grab a widget and write it as a palette PNG no larger than MAX_BYTES."""
    from PIL import Image

    raw = path.with_suffix(".raw.png")
    widget.grab().save(str(raw), "PNG")
    im = Image.open(raw).convert("RGB")
    for colours in (256, 128, 64):
        im.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            path, optimize=True)
        if path.stat().st_size <= MAX_BYTES:
            break
    raw.unlink()
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1000:.0f} KB")


def shoot_main(app, window) -> None:
    window.resize(1280, 800)
    window.search.field.setText(QUERY)
    window.search.search_now()
    wait(app, lambda: window.shown is not None and window.results.rowCount() > 0)
    wait(app, lambda: window.preview.current is not None)
    window.grid.viewport().update()
    app.processEvents()
    wait(app, lambda: not window.loader._pending)
    app.processEvents()
    save_small(window, OUT / "main-window.png")


def shoot_settings(app, window, steps: int) -> None:
    window.open_settings()
    dialog = window._settings_dialog
    dialog.resize(760, 560)
    dialog.tabs.setCurrentWidget(dialog.finetune)
    panel = dialog.finetune
    wait(app, lambda: panel.count_label.text() != "")
    panel.steps.setValue(steps)
    panel.start()
    wait(app, lambda: not panel.is_running())
    app.processEvents()
    save_small(dialog, OUT / "settings.png")
    if os.environ.get("CHIKAKU_SHOTS_EXTRA"):  # the other tabs, to look at (not kept)
        for i in range(dialog.tabs.count()):
            dialog.tabs.setCurrentIndex(i)
            app.processEvents()
            dialog.grab().save(f"{os.environ['CHIKAKU_SHOTS_EXTRA']}/tab{i}.png")
    panel.go_back()  # leave the library as it was (it is thrown away anyway)
    wait(app, lambda: window.statusbar.activity("activate") is None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", help="an existing library to show (default: build one)")
    parser.add_argument("--steps", type=int, default=100, help="fine-tuning steps to show")
    args = parser.parse_args(argv)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    tmp = Path(tempfile.mkdtemp(prefix="chikaku-shots-"))
    os.environ["CHIKAKU_CONFIG_DIR"] = str(tmp / "config")
    try:
        from app.window import MainWindow
        from engine.library import Library

        lib = Library.open(args.library) if args.library else build_library(tmp)
        window = MainWindow(library=lib)
        window.show()
        wait(app, lambda: window.status is not None)
        OUT.mkdir(parents=True, exist_ok=True)
        shoot_main(app, window)
        shoot_settings(app, window, args.steps)
        window.close()
        lib.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
