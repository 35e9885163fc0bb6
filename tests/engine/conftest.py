"""Fixtures for engine tests: a small library of captioned synthetic photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.library import Library
from tests.conftest import TINY_MODEL

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220),
           "yellow": (240, 220, 30)}
SHAPES = ("circle", "square", "stripes")


def _draw(colour, shape, rng) -> Image.Image:
    bg = tuple(int(v) for v in rng.integers(0, 60, 3))
    im = Image.new("RGB", (64, 64), bg)
    d = ImageDraw.Draw(im)
    x, y = (int(v) for v in rng.integers(4, 20, 2))
    if shape == "circle":
        d.ellipse((x, y, x + 40, y + 40), fill=colour)
    elif shape == "square":
        d.rectangle((x, y, x + 38, y + 38), fill=colour)
    else:
        for i in range(0, 64, 12):
            d.rectangle((0, i, 63, i + 5), fill=colour)
    return im


@pytest.fixture
def shapes_lib(tmp_path):
    """48 synthetic photos of coloured shapes, each captioned with what it shows."""
    folder = tmp_path / "shapes"
    folder.mkdir()
    rng = np.random.default_rng(0)
    truth = {}
    for i in range(48):
        colour = list(COLOURS)[i % 4]
        shape = SHAPES[(i // 4) % 3]
        name = f"{i:03d}.png"
        _draw(COLOURS[colour], shape, rng).save(folder / name)
        truth[name] = (colour, shape)
    lib = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    lib.add_folders([folder])
    for name, (colour, shape) in truth.items():
        photo = lib.photo_by_path(folder / name)
        lib.set_captions(photo.id, [f"a {colour} {shape}", f"{shape} in {colour}"])
    yield lib, folder, truth
    lib.close()


