"""Model files are data, never code. A malformed, damaged, hostile or wrong-architecture
checkpoint folder is a ModelLoadError; trying to activate one leaves the active model and search
as they were; a damaged active model is a clear error and the previous model still works."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import cli
from engine.config import TrainOptions
from engine.errors import ModelLoadError
from engine.library import Library
from engine.models import create_model, load_checkpoint, save_checkpoint
from engine.training.finetune import captioned_photos as library_captions
from engine.training.loop import run_key
from tests.events import train_events
from tests.reliability.helpers import TINY_MODEL, captioned_photos, integrity

QUICK = dict(steps=6, batch_size=8, eval_every=3, holdout=0.25, checkpoint_every=3)


class Payload:
    """Unpickling this writes a file: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran while loading"))


def _edit_config(change):
    def edit(ck: Path) -> None:
        meta = json.loads((ck / "config.json").read_text())
        change(meta)
        (ck / "config.json").write_text(json.dumps(meta))
    return edit


def _edit_weights(change):
    def edit(ck: Path) -> None:
        tensors = load_file(str(ck / "weights.safetensors"))
        change(tensors)
        save_file(tensors, str(ck / "weights.safetensors"))
    return edit


def _replace(name: str, make):
    def edit(ck: Path) -> None:
        target = ck / name
        target.unlink()
        make(target)
    return edit


def _other_architecture(ck: Path) -> None:
    wider = create_model({**TINY_MODEL, "width": 32}, device="cpu")
    save_file({k: v.contiguous() for k, v in wider.trained_state().items()},
              str(ck / "weights.safetensors"))


def _nudge(tensors: dict) -> None:
    key = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[key] = tensors[key] + 0.01


DAMAGE = {
    "no config": lambda ck: (ck / "config.json").unlink(),
    "config is not JSON": lambda ck: (ck / "config.json").write_bytes(b"\x00{not json"),
    "config is a list": lambda ck: (ck / "config.json").write_text("[1, 2, 3]"),
    "config names no model": lambda ck: (ck / "config.json").write_text('{"version": "x"}'),
    "config is a folder": _replace("config.json", lambda p: p.mkdir()),
    "unknown family": _edit_config(lambda m: m["config"].update(family="alien")),
    "family is not a name": _edit_config(lambda m: m["config"].update(family=["scratch"])),
    "size of the wrong type": _edit_config(lambda m: m["config"].update(dim="thirty-two")),
    "negative size": _edit_config(lambda m: m["config"].update(width=-4)),
    "unknown option": _edit_config(lambda m: m["config"].update(dim=None)),
    "no weights": lambda ck: (ck / "weights.safetensors").unlink(),
    "weights cut short": lambda ck: (ck / "weights.safetensors").write_bytes(
        (ck / "weights.safetensors").read_bytes()[:5000]),
    "weights header lies": lambda ck: (ck / "weights.safetensors").write_bytes(
        struct.pack("<Q", 1 << 60) + b'{"a": 1}'),
    "weights are a folder": _replace("weights.safetensors", lambda p: p.mkdir()),
    "weights of a wider model": _other_architecture,
    "a tensor missing": _edit_weights(lambda t: t.pop(sorted(t)[0])),
    "a tensor too many": _edit_weights(lambda t: t.update(extra=torch.zeros(3))),
    "weights changed after saving": _edit_weights(_nudge),
}


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    model = create_model({**TINY_MODEL, "seed": 5}, device="cpu")
    return save_checkpoint(model, tmp_path / "ck", {"note": "a good checkpoint"})


def test_a_good_checkpoint_loads(checkpoint):
    assert load_checkpoint(checkpoint, device="cpu").family == "scratch"


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_checkpoint_is_a_model_load_error(checkpoint, damage):
    DAMAGE[damage](checkpoint)
    with pytest.raises(ModelLoadError) as err:
        load_checkpoint(checkpoint, device="cpu")
    message = str(err.value)
    assert "checkpoint" in message or "model" in message, message


@pytest.mark.parametrize("how", ["torch.save", "plain pickle"])
def test_weights_are_never_unpickled(checkpoint, tmp_path, how):
    marker = tmp_path / "code-ran"
    weights = checkpoint / "weights.safetensors"
    if how == "torch.save":
        torch.save({"image_proj.weight": Payload(marker)}, weights)
    else:
        import pickle

        weights.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ModelLoadError):
        load_checkpoint(checkpoint, device="cpu")
    assert not marker.exists()


@pytest.fixture
def trained(tmp_path):
    """A library of captioned photos and a fine-tuned model version kept beside the active one."""
    folder = tmp_path / "photos"
    truth = captioned_photos(folder)
    lib = Library.open(tmp_path / "library", device="cpu", default_model=TINY_MODEL)
    lib.add_folders([folder])
    for name, text in truth.items():
        lib.set_captions(lib.photo_by_path(folder / name).id, [text, f"{text} on a dark ground"])
    events = train_events(lib, TrainOptions(**QUICK, activate="never"))
    new = events[-1].result.version
    yield lib, new
    lib.close()


def _top(lib) -> list[tuple[int, float]]:
    return [(h.photo_id, round(h.score, 5)) for h in lib.search("a red disc", k=6)]


def test_activating_a_damaged_checkpoint_leaves_the_library_as_it_was(trained, capsys):
    lib, new = trained
    active, before = lib.active_model_record().version, _top(lib)
    folder = lib.config.models_dir / new
    assert folder.is_dir()
    pristine = folder.with_name("pristine")
    shutil.copytree(folder, pristine)
    for damage in ("weights cut short", "weights of a wider model", "config is not JSON",
                   "size of the wrong type"):
        shutil.rmtree(folder)
        shutil.copytree(pristine, folder)
        DAMAGE[damage](folder)
        with pytest.raises(ModelLoadError):
            lib.activate_model(new)
        assert lib.active_model_record().version == active == lib.model.version, damage
        assert _top(lib) == before, damage
        code = cli.main(["models", "activate", new, "--library", str(lib.root),
                         "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 1 and err.startswith("chikaku: ") and "Traceback" not in err, err
    assert integrity(lib.root) == ["ok"]
    shutil.rmtree(folder)
    shutil.copytree(pristine, folder)
    lib.activate_model(new)  # the undamaged checkpoint still activates
    assert lib.active_model_record().version == new


def test_a_damaged_active_model_is_a_clear_error_and_going_back_works(trained, capsys):
    lib, new = trained
    photos, captions = lib.status().photos, lib.status().captions
    lib.activate_model(new)
    lib.close()
    weights = lib.config.models_dir / new / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:3000])
    again = Library.open(lib.root, device="cpu", default_model=TINY_MODEL)
    try:
        with pytest.raises(ModelLoadError):
            again.search("a red disc")
        assert cli.main(["search", "a red disc", "--library", str(lib.root),
                         "--device", "cpu"]) == 1
        assert capsys.readouterr().err.startswith("chikaku: ")
        assert cli.main(["models", "back", "--library", str(lib.root), "--device", "cpu"]) == 0
        assert again.search("a red disc", k=3)
        assert (again.status().photos, again.status().captions) == (photos, captions)
    finally:
        again.close()


def test_training_never_unpickles_what_it_finds_on_disk(trained, tmp_path):
    lib, _ = trained
    marker = tmp_path / "code-ran"
    opts = TrainOptions(**QUICK, seed=11, activate="never")
    parent = lib.active_model_record().version
    run_dir = lib.config.models_dir / "_runs" / run_key(opts, parent, library_captions(lib.catalog))
    run_dir.mkdir(parents=True)
    torch.save({"step": Payload(marker), "model": {}}, run_dir / "state.pt")
    key = hashlib.blake2b(json.dumps(lib.model.config(), sort_keys=True).encode(),
                          digest_size=8).hexdigest()
    cache = lib.config.cache_dir / "features" / f"{lib.model.family}-{key}.npz"
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=np.array([Payload(marker)], dtype=object))
    events = train_events(lib, opts)
    assert events[-1].kind == "done"
    assert not any("resuming" in e.message for e in events)  # the planted state was refused
    assert not marker.exists()
