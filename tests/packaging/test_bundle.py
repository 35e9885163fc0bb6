"""Build the frozen one-folder bundle and use it like a user would, with no Python around it.

Never part of the normal run (the build takes many minutes and several GB of disk):

    CHIKAKU_BUILD_BUNDLE=1 .venv/bin/python -m pytest tests/packaging/test_bundle.py -m slow -v

CHIKAKU_BUNDLE_DIR=dist/chikaku tests an existing bundle instead of building one.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "packaging" / "chikaku.spec"
DATASET_IMAGES = ROOT.parent / "shared" / "datasets" / "flickr8k-1k" / "images"
EXE = "chikaku.exe" if sys.platform == "win32" else "chikaku"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("CHIKAKU_BUILD_BUNDLE") != "1",
                       reason="builds the PyInstaller bundle; set CHIKAKU_BUILD_BUNDLE=1"),
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    existing = os.environ.get("CHIKAKU_BUNDLE_DIR")
    if existing:
        folder = Path(existing).resolve()
        assert (folder / EXE).is_file(), f"no {EXE} in {folder}"
        return folder
    pytest.importorskip("PyInstaller", reason="pip install -e '.[packaging]'")
    out = tmp_path_factory.mktemp("bundle")
    run = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--distpath", str(out / "dist"),
         "--workpath", str(out / "build"), str(SPEC)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-8000:]
    folder = out / "dist" / "chikaku"
    assert (folder / EXE).is_file()
    return folder


@functools.cache
def _no_network_prefix() -> tuple[str, ...]:
    """`unshare -n` (a private network namespace with no interfaces up) where it is allowed."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return (unshare, "-n")
    return ()


def _frozen(bundle: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    # No Python paths from this interpreter, no network-reaching caches: only the bundle, and
    # where the system allows it no network at all.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "HF_", "CHIKAKU_"))}
    env["HOME"] = str(cwd)
    env["XDG_DATA_HOME"] = str(cwd / "data")
    env["XDG_CACHE_HOME"] = str(cwd / "cache")
    return subprocess.run([*_no_network_prefix(), str(bundle / EXE), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1800)


@pytest.fixture
def six_photos(tmp_path) -> Path:
    if not DATASET_IMAGES.is_dir():
        pytest.skip(f"the shared data set is not at {DATASET_IMAGES}")
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted(DATASET_IMAGES.iterdir())[:6]:
        shutil.copy2(p, folder / p.name)
    return folder


def test_frozen_version(bundle, tmp_path):
    from engine import __version__

    run = _frozen(bundle, "--version", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"chikaku {__version__}"
    assert "+source" not in run.stdout  # the package metadata travelled with the bundle


def test_frozen_index_and_search_offline(bundle, six_photos, tmp_path):
    library = tmp_path / "library"
    run = _frozen(bundle, "index", str(six_photos), "--library", str(library), "--quiet",
                  cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "6 photos found: 6 added" in run.stdout, run.stdout
    assert "6 embedded" in run.stdout, run.stdout

    run = _frozen(bundle, "search", "a dog", "--library", str(library), "--json",
                  cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    hits = json.loads(run.stdout)
    assert len(hits) == 6
    assert {Path(h["path"]).name for h in hits} == {p.name for p in six_photos.iterdir()}
    assert [h["rank"] for h in hits] == list(range(1, 7))

    # The frozen model is the model: the source tree ranks the same library the same way.
    source = subprocess.run(
        [sys.executable, "-c", "import sys; from app.launcher import main; sys.exit(main())",
         "search", "a dog", "--library", str(library), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )
    assert source.returncode == 0, source.stderr
    expected = json.loads(source.stdout)
    assert [h["path"] for h in hits] == [h["path"] for h in expected]
    for frozen_hit, source_hit in zip(hits, expected, strict=True):
        assert frozen_hit["score"] == pytest.approx(source_hit["score"], abs=1e-3)
