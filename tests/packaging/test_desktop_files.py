"""The Linux desktop integration: desktop entry, AppStream metainfo, icons, install script."""

from __future__ import annotations

import configparser
import os
import shutil
import struct
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP_ID = "io.github.chikaku.Chikaku"
LINUX = ROOT / "packaging" / "linux"
DESKTOP = LINUX / f"{APP_ID}.desktop"
METAINFO = LINUX / f"{APP_ID}.metainfo.xml"
ICONS = ROOT / "resources" / "icons"
INSTALLER = ROOT / "packaging" / "install-desktop-entry.sh"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian/Ubuntu: apt-get install {package})")
    return path


def _problems(output: str, severities: tuple[str, ...]) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(severities)]


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(DESKTOP, encoding="utf-8")
    return parser["Desktop Entry"]


def _console_scripts() -> dict[str, str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def test_desktop_entry_validates():
    validate = _tool("desktop-file-validate", "desktop-file-utils")
    run = subprocess.run([validate, str(DESKTOP)], capture_output=True, text=True)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    # Hints are advice; errors and warnings are not allowed.
    assert not [line for line in out.splitlines() if "error:" in line or "warning:" in line], out


def test_metainfo_validates():
    appstreamcli = _tool("appstreamcli", "appstream")
    run = subprocess.run([appstreamcli, "validate", "--no-net", str(METAINFO)],
                         capture_output=True, text=True)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert not _problems(out, ("E:", "W:")), out


def test_desktop_entry_names_the_app_id_and_the_console_script():
    entry = _desktop_entry()
    assert DESKTOP.name == f"{APP_ID}.desktop"
    assert entry["Icon"] == APP_ID
    assert entry["Exec"].split()[0] in _console_scripts()
    assert entry["Type"] == "Application"
    assert entry["Terminal"] == "false"
    categories = set(filter(None, entry["Categories"].split(";")))
    assert {"Graphics", "Photography", "Viewer"} <= categories


def test_metainfo_matches_the_desktop_entry_and_the_package():
    root = ET.parse(METAINFO).getroot()
    assert root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.findtext("launchable") == DESKTOP.name
    assert root.findtext("project_license") == "MIT"
    assert root.find("content_rating") is not None
    assert root.find("description") is not None
    binaries = [b.text for b in root.iterfind("provides/binary")]
    assert binaries and all(b in _console_scripts() for b in binaries)
    with open(ROOT / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    releases = [r.get("version") for r in root.iterfind("releases/release")]
    assert releases[0] == version, "the newest release must be the package's version"
    image = root.findtext("screenshots/screenshot/image")
    assert image and image.endswith("resources/screenshots/main-window.png")


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("size", SIZES)
def test_png_icons_have_their_named_size(size):
    path = ICONS / f"chikaku-{size}.png"
    assert path.is_file()
    assert _png_size(path) == (size, size)


def test_svg_icon_sources_exist():
    for name in ("chikaku.svg", "chikaku-small.svg"):
        root = ET.parse(ICONS / name).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_install_script_installs_and_uninstalls_from_any_directory(tmp_path):
    sh = _tool("sh", "dash")
    data = tmp_path / "share"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "XDG_DATA_HOME": str(data)}
    rel = os.path.relpath(INSTALLER, elsewhere)

    run = subprocess.run([sh, rel], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    installed = data / "applications" / DESKTOP.name
    assert installed.read_text(encoding="utf-8") == DESKTOP.read_text(encoding="utf-8")
    assert (data / "metainfo" / METAINFO.name).is_file()
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg").is_file()
    for size in SIZES:
        png = data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        assert _png_size(png) == (size, size)

    run = subprocess.run([sh, rel, "--exec", "/opt/Chikaku bundle/chikaku"], cwd=elsewhere,
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert 'Exec="/opt/Chikaku bundle/chikaku"' in installed.read_text(encoding="utf-8")
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(installed)], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stdout + check.stderr

    run = subprocess.run([sh, rel, "--uninstall"], cwd=elsewhere, env=env, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    leftovers = [p for p in data.rglob("*") if p.is_file() and APP_ID in p.name]
    assert leftovers == []
