"""Render the app icon: resources/icons/chikaku.svg -> PNGs, packaging/windows/chikaku.ico and
packaging/macos/chikaku.icns.

    python packaging/render_icons.py

16 and 24 px come from chikaku-small.svg, drawn on the 16-pixel grid so that they stay sharp;
the larger sizes come from chikaku.svg. Needs `rsvg-convert` (Debian: librsvg2-bin) or the
`cairosvg` package, and Pillow. The outputs are committed; run this only after editing an SVG.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ICONS = ROOT / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
SMALL = (16, 24)


def render(svg: Path, size: int, out: Path) -> None:
    if shutil.which("rsvg-convert"):
        subprocess.run(["rsvg-convert", "-w", str(size), "-h", str(size), str(svg), "-o",
                        str(out)], check=True)
        return
    try:
        import cairosvg
    except ImportError:
        sys.exit("needs rsvg-convert (apt-get install librsvg2-bin) or pip install cairosvg")
    cairosvg.svg2png(url=str(svg), write_to=str(out), output_width=size, output_height=size)


def main() -> int:
    pngs = {}
    for size in SIZES:
        svg = ICONS / ("chikaku-small.svg" if size in SMALL else "chikaku.svg")
        out = ICONS / f"chikaku-{size}.png"
        render(svg, size, out)
        pngs[size] = out
        print(out.relative_to(ROOT))

    win = ROOT / "packaging" / "windows" / "chikaku.ico"
    win.parent.mkdir(parents=True, exist_ok=True)
    big = Image.open(pngs[256]).convert("RGBA")
    extra = [Image.open(pngs[s]).convert("RGBA") for s in (16, 24, 32, 48, 64, 128)]
    big.save(win, format="ICO", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)],
             append_images=extra)
    print(win.relative_to(ROOT))

    mac = ROOT / "packaging" / "macos" / "chikaku.icns"
    mac.parent.mkdir(parents=True, exist_ok=True)
    largest = Image.open(pngs[512]).convert("RGBA")
    others = [Image.open(pngs[s]).convert("RGBA") for s in (16, 32, 64, 128, 256)]
    largest.save(mac, format="ICNS", append_images=others)
    print(mac.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
