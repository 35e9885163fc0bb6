"""The login item that keeps a library current while the app is closed."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pytest

from app import autostart
from tests.conftest import dataset_images


@pytest.fixture
def xdg_config(tmp_path, monkeypatch):
    folder = tmp_path / "xdg-config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder))
    return folder


def test_the_login_item_runs_a_watcher_that_indexes_new_photos(xdg_config, tiny_lib, photos):
    tiny_lib.add_folders([photos])
    assert not autostart.enabled()
    path = autostart.enable(str(tiny_lib.root))
    assert path == xdg_config / "autostart" / f"{autostart.LABEL}.desktop" and autostart.enabled()
    command = autostart.desktop_command(path)
    assert command[-3:] == ["watch", "--library", str(tiny_lib.root)]

    # run it as the login session would, and copy a photo in meanwhile
    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        new = photos / "arrived-later.jpg"
        time.sleep(2)
        shutil.copy2(dataset_images()[30], new)
        end = time.monotonic() + 90
        while tiny_lib.photo_by_path(new) is None and time.monotonic() < end:
            assert watcher.poll() is None, watcher.stderr.read()
            time.sleep(0.5)
        assert tiny_lib.photo_by_path(new) is not None
    finally:
        watcher.send_signal(signal.SIGTERM)
        code = watcher.wait(timeout=60)
    assert code == 0

    assert autostart.disable() and not autostart.enabled() and not path.exists()
    assert not autostart.disable()  # nothing left to remove


def test_a_library_path_the_entry_cannot_carry_is_refused_with_the_reason(xdg_config, tmp_path):
    with pytest.raises(OSError, match="cannot carry"):
        autostart.enable(str(tmp_path / "price$list"))
    assert not autostart.enabled()
