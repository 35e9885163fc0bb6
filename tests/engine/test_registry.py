"""The model registry: versions, their checkpoints and the active one, in a bare catalog."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.catalog import Catalog
from engine.errors import LibraryError
from engine.index import VectorIndex, file_name
from engine.models import create_model
from engine.registry import ModelRegistry
from tests.conftest import TINY_MODEL


def _open(root: Path) -> tuple[Catalog, ModelRegistry]:
    root.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(f"sqlite:///{root / 'catalog.db'}")
    return catalog, ModelRegistry(catalog, root, root / "models", root / "index")


def _models():
    base = create_model(TINY_MODEL, device="cpu")
    child = create_model({**TINY_MODEL, "seed": 1}, device="cpu")
    child.parent = base.version
    return base, child


@pytest.fixture
def registry(tmp_path):
    catalog, reg = _open(tmp_path / "lib")
    yield reg
    catalog.close()


def test_register_activate_and_previous(registry):
    base, child = _models()
    registry.register(base, active=True)
    folder = registry.save(child, {"note": "trained"})
    assert folder == registry.checkpoint_folder(child.version)
    assert (folder / "weights.safetensors").is_file()
    records = registry.records()
    assert [(m.version, m.active) for m in records] == [(base.version, True),
                                                        (child.version, False)]
    assert records[1].info == {"note": "trained"} and records[1].parent == base.version
    assert registry.active().version == base.version

    registry.set_active(child.version)
    assert registry.active().version == child.version
    assert [m.version for m in registry.records() if m.active] == [child.version]
    assert registry.previous(child.version) == base.version
    assert registry.previous(base.version) is None

    registry.register(child, active=False)  # already there: kept as it is
    assert registry.active().version == child.version


def test_delete_removes_rows_vectors_folder_and_index_files(registry):
    base, child = _models()
    registry.register(base, active=True)
    folder = registry.save(child, {})
    idx = VectorIndex(child.dim, child.version, use_gpu=False)
    idx.add(np.array([1], dtype=np.int64), np.ones((1, child.dim), dtype=np.float32))
    idx.save(registry.index_dir, generation=0)
    assert list(registry.index_dir.glob(file_name(child.version) + ".*"))

    with pytest.raises(LibraryError, match="active model cannot be deleted"):
        registry.delete(base.version)
    registry.delete(child.version)
    assert [m.version for m in registry.records()] == [base.version]
    assert registry.get(child.version) is None
    assert not folder.exists()
    assert not list(registry.index_dir.glob(file_name(child.version) + ".*"))
    assert registry.previous(base.version) is None
    with pytest.raises(LibraryError, match="no model"):
        registry.delete(child.version)


def test_a_checkpoint_is_loaded_after_the_library_folder_moves(tmp_path):
    base, child = _models()
    catalog, reg = _open(tmp_path / "lib")
    reg.register(base, active=True)
    reg.save(child, {})
    reg.set_active(child.version)
    catalog.close()

    shutil.move(tmp_path / "lib", tmp_path / "moved")
    catalog, reg = _open(tmp_path / "moved")
    rec = reg.active()
    assert Path(rec.path) == tmp_path / "moved" / "models" / file_name(child.version)
    loaded = reg.load(rec, "cpu")
    assert loaded.version == child.version
    assert reg.load(reg.get(base.version), "cpu").version == base.version  # built from its config
    catalog.close()


def test_an_older_absolute_row_is_read_as_this_librarys_folder(tmp_path):
    catalog, reg = _open(tmp_path / "lib")
    own = reg.models_dir / "v1"
    own.mkdir(parents=True)
    assert reg.checkpoint_dir(str(tmp_path / "elsewhere" / "models" / "v1")) == own
    assert reg.checkpoint_dir(str(tmp_path / "elsewhere" / "v2")) == tmp_path / "elsewhere" / "v2"
    assert reg.checkpoint_dir("models/v3") == tmp_path / "lib" / "models" / "v3"
    assert reg.checkpoint_dir(None) is None
    catalog.close()
