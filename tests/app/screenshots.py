"""Save screenshots of the app for the README: the library with no query, results with the
preview, results newest first with a selection, a search with a photo (its chip), and the
folders in Settings.

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m tests.app.screenshots [--library DIR]

Without --library it builds a throw-away library (the bundled model over the freely licensed
photos in resources/sample-photos, two of them captioned) in a temporary folder. Only those
photos ever appear in the screenshots (their sources: resources/sample-photos/SOURCES.md).
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
SAMPLES = ROOT / "resources" / "sample-photos"
QUERY = "a cat"
CAPTIONS = {"chelsea-the-cat.jpg": ["Chelsea asleep on the landing", "our cat Chelsea"],
            "coffee-cup.jpg": ["a flat white at Pikolo Espresso Bar"]}
# for the Fine-tuning tab's screenshot: every sample photo with two captions
TEACH = {
    "astronaut-eileen-collins.jpg": ["an astronaut in an orange suit", "a smiling woman astronaut"],
    "photographer-with-camera.jpg": ["a man with a camera on a tripod", "a photographer outside"],
    "chelsea-the-cat.jpg": ["Chelsea asleep on the landing", "our cat Chelsea"],
    "wall-clock-motion-blur.jpg": ["a blurred clock on the wall", "the kitchen clock"],
    "coffee-cup.jpg": ["a flat white at Pikolo Espresso Bar", "coffee in a red cup"],
    "greek-coins.jpg": ["old Greek coins", "coins from Pompeii in the museum"],
    "hubble-deep-field.jpg": ["galaxies in the deep field", "a sky full of galaxies"],
    "retina-fundus.jpg": ["a photo of the back of an eye", "the retina at the eye clinic"],
    "falcon-9-launch.jpg": ["a rocket on the launch pad at night", "the Falcon 9 launch"],
    "brick-wall.jpg": ["a grey brick wall", "bricks"],
    "grass.jpg": ["grass in the garden", "a lawn up close"],
    "gravel.jpg": ["gravel on the drive", "small stones"],
}
MAX_BYTES = 300_000


def wait(app, condition, timeout: float = 600.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the app did not get there in time")
        app.processEvents()
        time.sleep(0.002)


def build_library(folder: Path):
    from engine.library import Library

    photos = folder / "Photos" / "Sample photos"
    photos.mkdir(parents=True)
    for i, p in enumerate(sorted(SAMPLES.glob("*.jpg"))):
        shutil.copy2(p, photos / p.name)
        os.utime(photos / p.name, (1_700_000_000 + i * 7 * 86_400,) * 2)  # a week apart
    lib = Library.open(folder / "library", device="cpu")
    lib.add_folders([photos])
    for name, lines in CAPTIONS.items():
        lib.set_captions(lib.photo_by_path(photos / name).id, lines)
    return lib


def pause(app, seconds: float = 0.5) -> None:
    """Let the app handle what is pending (layouts, thumbnails) for a moment."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


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


def settle(app, window) -> None:
    """Every visible thumbnail made and painted."""
    window.grid.viewport().update()
    app.processEvents()
    wait(app, lambda: not window.loader._pending)
    time.sleep(0.2)
    app.processEvents()


def shoot_home(app, window) -> None:
    window.resize(1280, 800)
    wait(app, lambda: window.results.browsing and window.results.rowCount() > 0)
    settle(app, window)
    save_small(window, OUT / "home.png")


def shoot_main(app, window) -> None:
    window.search.field.setText(QUERY)
    window.search.search_now()
    wait(app, lambda: window.shown is not None and window.results.rowCount() > 0)
    wait(app, lambda: window.preview.current is not None)
    settle(app, window)
    save_small(window, OUT / "main-window.png")


def shoot_by_date(app, window) -> None:
    """Results of a query, newest first, under the month header; two of them selected."""
    window.search.field.setText("a photo outdoors")
    window.search.sort_box.setCurrentIndex(window.search.sort_box.findData("date"))
    window.search.search_now()
    wait(app, lambda: window.shown is not None and window.shown.text == "a photo outdoors"
         and window.results.rowCount() > 0)
    window.grid.selectionModel().clearSelection()
    for row in (0, 2):
        window.grid.selectionModel().select(window.results.index(row),
                                            window.grid.selectionModel().SelectionFlag.Select)
    settle(app, window)
    save_small(window, OUT / "results-by-date.png")
    window.search.sort_box.setCurrentIndex(0)


def shoot_chip(app, window) -> None:
    """Searching with a photo: its chip beside the field, words added to it."""
    window.search.field.setText(QUERY)
    window.search.search_now()
    wait(app, lambda: window.shown is not None and window.shown.text == QUERY
         and window.results.rowCount() > 0)
    window.find_similar(window.results.hit(0).photo_id)
    wait(app, lambda: window.shown is not None and window.shown.images)
    settle(app, window)
    save_small(window, OUT / "image-chip.png")


def shoot_finetune(app, window) -> None:
    """The Fine-tuning tab after a quick fine-tune on the captioned sample photos, with the
    earlier and the new model side by side."""
    lib = window.library
    folder = Path(window.status.folders[0]) if window.status.folders else None
    for name, lines in TEACH.items():
        photo = lib.photo_by_path(folder / name) if folder else None
        if photo is not None:
            lib.set_captions(photo.id, lines)
    window.refresh_status()
    window.open_settings()
    dialog = window._settings_dialog
    dialog.resize(760, 900)
    panel = dialog.finetune
    dialog.tabs.setCurrentWidget(panel)
    panel.refresh_count()
    wait(app, lambda: panel.start_button.isEnabled())
    panel.quick.click()
    panel.start()
    # while the photos are read (the first part of a fine-tune, the longest on a large library)
    wait(app, lambda: panel.step_label.text().startswith("Reading photos")
         or panel.result is not None)
    if panel.result is None:
        save_small(dialog, OUT / "finetune-reading.png")
    wait(app, lambda: panel.result is not None and not panel.is_running())
    wait(app, lambda: len(panel.compare.examples) > 0)
    pause(app)  # the tiles' thumbnails and the layout that makes room for them
    save_small(dialog, OUT / "finetune-compare.png")
    panel.go_back()  # the screenshots before it show the base model
    wait(app, lambda: "previous model" in panel.result_label.text().lower())
    dialog.close()


def shoot_folders(app, window) -> None:
    window.open_settings()
    dialog = window._settings_dialog
    dialog.resize(760, 560)
    dialog.tabs.setCurrentIndex(0)  # Library: the folders and their state
    wait(app, lambda: dialog.folders.count() > 0 and "no folders" not in
         dialog.folders.item(0).text())
    time.sleep(0.5)
    app.processEvents()
    save_small(dialog, OUT / "settings-folders.png")
    dialog.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", help="an existing library to show (default: build one)")
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
        shoot_home(app, window)
        shoot_main(app, window)
        shoot_by_date(app, window)
        shoot_chip(app, window)
        shoot_folders(app, window)
        shoot_finetune(app, window)
        window.close()
        lib.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
