"""app.icons and app.about: the icon loads every size; the About box names version and models."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

pytest.importorskip("PySide6")

from PySide6.QtWidgets import QApplication  # noqa: E402


@pytest.fixture(scope="module")
def qapp():
    return QApplication.instance() or QApplication([])


def test_app_icon_has_every_size(qapp):
    from app.icons import ICON_SIZES, app_icon

    icon = app_icon()
    assert not icon.isNull()
    sizes = {(s.width(), s.height()) for s in icon.availableSizes()}
    assert sizes == {(n, n) for n in ICON_SIZES}


def test_icons_are_found_in_a_frozen_bundle(qapp, tmp_path, monkeypatch):
    import shutil
    import sys

    from app.icons import icons_dir

    bundle_icons = tmp_path / "resources" / "icons"
    shutil.copytree(icons_dir(), bundle_icons)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert icons_dir() == bundle_icons


def test_about_box_names_version_licence_and_models(qapp):
    from app.about import about_dialog
    from engine import __version__

    box = about_dialog()
    text = box.text()
    assert "Chikaku" in text and __version__ in text
    assert "MIT" in text
    assert "EfficientNet-Lite0" in text and "all-MiniLM-L6-v2" in text
    assert not box.iconPixmap().isNull()
    box.deleteLater()
