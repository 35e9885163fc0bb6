"""Files the engine replaces (index, checkpoints, caches, training state) are either the old file
or the new one, never half of one, and a failed write leaves nothing behind."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from engine.atomic import atomic_write, atomic_write_text

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")


def test_a_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "index.json"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "weights.safetensors"
    target.write_bytes(b"the trained weights")

    def half_then_full(tmp: Path) -> None:
        tmp.write_bytes(b"half of the new wei")
        raise NO_SPACE

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, half_then_full)
    assert target.read_bytes() == b"the trained weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.safetensors"]


def test_a_missing_folder_is_an_error_and_creates_nothing(tmp_path):
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "gone" / "state.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_that_cannot_be_written_says_where_and_leaves_nothing(tmp_path,
                                                                         monkeypatch):
    import safetensors.torch

    from engine.errors import LibraryError
    from engine.models import create_model, save_checkpoint
    from tests.conftest import TINY_MODEL

    def full(tensors, filename, *a, **kw):
        Path(filename).write_bytes(b"\x00" * 64)
        raise NO_SPACE

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    folder = tmp_path / "models" / "v1"
    with pytest.raises(LibraryError, match=f"cannot save the model in {folder}: No space left"):
        save_checkpoint(create_model(TINY_MODEL, device="cpu"), folder)
    assert list(folder.iterdir()) == []
