"""Fixtures for the desktop app's tests: Qt offscreen, a private config folder, open windows."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

WAIT_MS = 60_000  # generous: the bundled model is slow on a small CPU; nothing here is timed


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    """Settings and window state go to the test's own folder, never the user's."""
    folder = tmp_path / "config"
    monkeypatch.setenv("CHIKAKU_CONFIG_DIR", str(folder))
    monkeypatch.delenv("CHIKAKU_LIBRARY", raising=False)
    return folder


def open_window(qtbot, library=None, **kw):
    """A shown main window over ``library``, once the library's status has arrived."""
    from app.window import MainWindow

    window = MainWindow(library=library, **kw)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    if library is not None:
        qtbot.waitUntil(lambda: window.status is not None, timeout=WAIT_MS)
    return window


def close_window(window) -> None:
    window.close()  # waits for its jobs: the library can be closed after this


def wait_for_results(qtbot, window, text=None, image=None):
    """Wait until the grid shows the results of exactly this query."""
    def shown():
        s = window.shown
        assert s is not None and s.text == (text or "") and s.image == image
        assert window.results.rowCount() > 0
    qtbot.waitUntil(shown, timeout=WAIT_MS)


@pytest.fixture
def tiny_window(qtbot, tiny_lib, photos):
    """The window over a tiny-model library holding 12 real photos."""
    tiny_lib.add_folders([photos])
    window = open_window(qtbot, tiny_lib)
    yield window
    close_window(window)


@pytest.fixture
def bundled_window(qtbot, bundled_library):
    lib, _folder = bundled_library
    window = open_window(qtbot, lib)
    yield window
    close_window(window)
