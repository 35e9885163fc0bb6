"""Shared fixtures: the shared captioned photos, tiny libraries and a real bundled library."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def _beside_the_checkout() -> Path:
    """``shared/datasets/flickr8k-1k`` beside the checkout, or beside a folder above it (a
    checkout made inside a subfolder finds the same data); the first place when none has it."""
    places = [up / "shared" / "datasets" / "flickr8k-1k"
              for up in Path(__file__).resolve().parents[1].parents]
    return next((p for p in places if p.is_dir()), places[0])


DATASET = Path(os.environ.get("CHIKAKU_TEST_DATASET") or _beside_the_checkout())
# Without the data set, the tests that need it are skipped and the run fails, unless this is set
# to 1: a run that silently tested less must not look green.
ALLOW_MISSING = "CHIKAKU_ALLOW_MISSING_DATA"
MISSING = f"the shared data set is not at {DATASET}"
_missing_skips: list[str] = []

# A few thousand parameters: fast, deterministic, good enough for "the same photo comes first".
TINY_MODEL = {"family": "scratch", "dim": 32, "width": 16, "input_size": 32, "seed": 0}

# Photos whose captions the bundled model finds first without training (checked on the full set).
KNOWN_QUERIES = {
    "107318069_e9f2ef32de.jpg": "A group of hot air balloons lit up at night",
    "109202801_c6381eef15.jpg": "Two draft horses pull a cart through the snow",
    "109738916_236dc456ac.jpg": "People are riding around on snowmobiles",
    "1028205764_7e8df9a2ea.jpg": "A man and a little boy in blue life jackets are rowing a "
                                 "yellow canoe",
}


def dataset_images() -> list[Path]:
    if not (DATASET / "images").is_dir():
        pytest.skip(MISSING)
    return sorted((DATASET / "images").iterdir())


@pytest.fixture(scope="session")
def dataset() -> Path:
    dataset_images()
    return DATASET


@pytest.fixture
def photos(tmp_path) -> Path:
    """A folder of 12 real photos (copied into the test's temporary folder)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in dataset_images()[:12]:
        shutil.copy2(p, folder / p.name)
    return folder


@pytest.fixture
def tiny_lib(tmp_path):
    from engine.library import Library

    lib = Library.open(tmp_path / "library", device="cpu", default_model=TINY_MODEL)
    yield lib
    lib.close()


@pytest.fixture(scope="session")
def bundled_library(tmp_path_factory):
    """A library indexed with the real bundled model over 60 photos, the known ones included."""
    from engine.library import Library

    base = tmp_path_factory.mktemp("bundled")
    folder = base / "photos"
    folder.mkdir()
    images = dataset_images()
    chosen = {p.name: p for p in images[:56]}
    for name in KNOWN_QUERIES:
        chosen[name] = DATASET / "images" / name
    for name, p in chosen.items():
        shutil.copy2(p, folder / name)
    lib = Library.open(base / "library", device="cpu")
    lib.add_folders([folder])
    yield lib, folder
    lib.close()


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of this test run, started at the first test that needs it; those
    tests are skipped, saying how to install one, where there is no server to start."""
    from tests.pgserver import INSTALL, PgServer, server_bin

    pytest.importorskip("psycopg", reason="the cluster extra (psycopg) is not installed")
    bindir = server_bin()
    if bindir is None:
        pytest.skip(INSTALL)
    server = PgServer(bindir)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request, monkeypatch) -> str | None:
    """A test using this runs twice: its libraries keep their catalog in the library folder
    (SQLite), then in a fresh PostgreSQL database, given as a shared catalog is, through
    CHIKAKU_DATABASE_URL. The database's URL, or None for SQLite."""
    monkeypatch.delenv("CHIKAKU_DATABASE_URL", raising=False)
    if request.param == "sqlite":
        return None
    url = request.getfixturevalue("postgres").new_database()
    monkeypatch.setenv("CHIKAKU_DATABASE_URL", url)
    return url


def pytest_collection_modifyitems(config, items):
    """GPU tests run only where CUDA is; elsewhere they are skipped with the reason."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_logreport(report):
    if report.skipped and MISSING in str(report.longrepr):
        _missing_skips.append(report.nodeid)


_session: list = []  # the test session, for the run's last hook


def pytest_sessionfinish(session, exitstatus):
    if _missing_skips and os.environ.get(ALLOW_MISSING) != "1" and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    _session.append(session)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """The run ends here, with its own status, once everything is reported. The native threads
    that Ray, PyTorch's process groups and Qt leave behind are still alive when the interpreter
    is torn down, and that teardown crashed the interpreter (a segmentation fault after every test
    had passed, which turned a green run red)."""
    if not _session:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(_session[-1].exitstatus))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _missing_skips:
        return
    count = len(set(_missing_skips))
    if os.environ.get(ALLOW_MISSING) == "1":
        terminalreporter.write_line(f"{count} tests skipped because {MISSING} "
                                    f"({ALLOW_MISSING}=1)", yellow=True, bold=True)
    else:
        terminalreporter.write_line(
            f"FAILED: {count} tests could not run because {MISSING}. Put flickr8k-1k there, or "
            f"set {ALLOW_MISSING}=1 to run without them on purpose.", red=True, bold=True)
