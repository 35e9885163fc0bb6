"""Training a model on captioned photos: it learns, it is saved and restored exactly, it can be
cancelled and resumed, and a run that is no better is not activated."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from engine.config import TrainOptions
from engine.errors import Cancelled, EngineError
from engine.imageio import decode_file
from engine.library import Library
from engine.models import create_model, load_checkpoint, save_checkpoint
from tests.conftest import TINY_MODEL
from tests.engine.conftest import COLOURS, SHAPES, _draw  # noqa: F401
from tests.events import train_events

OPTS = dict(steps=60, batch_size=32, lr=3e-3, holdout=0.25, eval_every=10, patience=10)


def _run(lib, **kw):
    events = train_events(lib, TrainOptions(**{**OPTS, **kw}))
    assert events[-1].kind == "done"
    return events, events[-1].result


def test_training_improves_held_out_recall_and_activates(shapes_lib):
    lib, folder, truth = shapes_lib
    before_version = lib.model.version
    events, result = _run(lib)
    assert result.improved and result.activated
    assert result.after["t2i_r5"] > result.before["t2i_r5"]
    assert any(e.kind == "step" and e.loss is not None for e in events)
    assert lib.active_model_record().version == result.version != before_version
    assert lib.active_model_record().parent == before_version
    hits = lib.search("a yellow circle", k=3)
    assert truth[hits[0].path.rsplit("/", 1)[1]] == ("yellow", "circle")
    info = {m.version: m for m in lib.models()}[result.version].info
    assert info["parent"] == before_version and info["photos"] == 32
    assert info["options"]["steps"] == 60 and "after" in info


def test_checkpoint_round_trip_gives_identical_embeddings(tmp_path):
    model = create_model(TINY_MODEL, device="cpu")
    with np.errstate(all="ignore"):
        for p in model.parameters():
            p.data.add_(0.01)
    model.forget_version()
    save_checkpoint(model, tmp_path / "ckpt", {"note": "test"})
    again = load_checkpoint(tmp_path / "ckpt", device="cpu")
    pixels = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    assert np.array_equal(model.encode_images(pixels), again.encode_images(pixels))
    assert np.array_equal(model.encode_texts(["a red circle"]), again.encode_texts(["a red circle"]))
    assert again.version == model.version


def test_bundled_checkpoint_round_trip(tmp_path):
    model = create_model({"family": "bundled"}, device="cpu")
    import torch

    with torch.no_grad():
        model.image_proj.weight.normal_(0, 0.01)
        model.text_proj.bias.fill_(0.02)
    model.forget_version()
    save_checkpoint(model, tmp_path / "b")
    again = load_checkpoint(tmp_path / "b", device="cpu")
    pixels = np.random.default_rng(1).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    assert np.array_equal(model.encode_images(pixels), again.encode_images(pixels))
    assert np.array_equal(model.encode_texts(["x"]), again.encode_texts(["x"]))
    # only the heads are stored: the towers come from the installed packages
    assert (tmp_path / "b" / "weights.safetensors").stat().st_size < 5_000_000


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    from engine.errors import ModelLoadError

    model = create_model(TINY_MODEL, device="cpu")
    save_checkpoint(model, tmp_path / "c")
    (tmp_path / "c" / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="unreadable"):
        load_checkpoint(tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="unreadable"):
        load_checkpoint(tmp_path / "c")


def test_cancel_then_resume_gives_the_same_model_as_an_uninterrupted_run(shapes_lib, tmp_path):
    lib, folder, _ = shapes_lib
    cancel = threading.Event()
    seen = []

    def listen(ev):
        seen.append(ev)
        if ev.kind == "step" and ev.done == 30:
            cancel.set()

    with pytest.raises(Cancelled):
        lib.train(TrainOptions(**{**OPTS, "checkpoint_every": 10, "activate": "never"}),
                  progress=listen, cancel=cancel)
    assert lib.models()[-1].version == lib.model.version  # nothing new, nothing activated
    events, resumed = _run(lib, checkpoint_every=10, activate="never")
    assert any("resuming at step 30" in e.message for e in events)
    assert min(e.done for e in events if e.kind == "step") == 31

    fresh = Library.open(tmp_path / "lib2", device="cpu", default_model=TINY_MODEL)
    fresh.add_folders([folder])
    for photo_path in sorted(folder.iterdir()):
        src = lib.photo_by_path(photo_path)
        fresh.set_captions(fresh.photo_by_path(photo_path).id, lib.captions(src.id))
    _, straight = _run(fresh, checkpoint_every=10, activate="never")
    assert resumed.version == straight.version  # bit-identical weights
    assert resumed.after == straight.after


def test_a_run_that_is_not_better_is_not_activated_unless_insisted(shapes_lib):
    lib, folder, _ = shapes_lib
    active = lib.model.version
    rng = np.random.default_rng(7)
    for p in sorted(folder.iterdir()):  # captions that say nothing about the photos
        words = ["".join(rng.choice(list("bcdfghjklmnpqrstvwxz"), 6)) for _ in range(3)]
        lib.set_captions(lib.photo_by_path(p).id, [" ".join(words)])
    _, result = _run(lib)
    assert not result.improved and not result.activated
    assert lib.model.version == active and lib.active_model_record().version == active
    assert result.version in {m.version for m in lib.models()}  # kept, to activate by hand
    _, insisted = _run(lib, seed=1, activate="always")
    assert insisted.activated and lib.active_model_record().version == insisted.version
    # going back needs no re-embedding: the old vectors are still stored
    totals = []
    lib.activate_model(lib.previous_model(),
                       progress=lambda p: totals.append(p.total) if p.kind == "indexing" else 0)
    assert lib.active_model_record().version == active and max(totals, default=0) == 0


def test_too_few_captioned_photos_is_a_clear_error(tiny_lib, photos):
    tiny_lib.add_folders([photos])
    with pytest.raises(EngineError, match="at least 8 captioned photos"):
        train_events(tiny_lib)


def test_scratch_model_trains_end_to_end_on_the_flickr_train_split(tmp_path, dataset):
    """Small towers from nothing, on 800 photos: low, but better than chance."""
    from engine.captions import import_csv

    lib = Library.open(tmp_path / "lib", device="cpu", default_model=TINY_MODEL)
    lib.add_folders([dataset / "images"])
    import_csv(lib, dataset / "captions.csv", split="train")
    opts = TrainOptions(family="scratch", steps=600, batch_size=128, lr=2e-3, eval_every=100,
                        patience=10, holdout=0.2, activate="never")
    result = train_events(lib, opts)[-1].result
    held = 160
    chance_r10 = 100 * 10 / held
    assert result.photos == 640
    assert result.after["t2i_r10"] > 1.3 * chance_r10, result.after
    assert result.after["i2t_r10"] > 1.3 * chance_r10, result.after
    lib.close()


def test_bundled_fine_tune_with_unlocked_blocks_and_crops_trains_those_blocks(tmp_path, dataset):
    """Unlocked tower blocks really learn (their weights move), crop views are cached, and the
    checkpoint, with the unlocked blocks in it, gives back the same embeddings."""
    import csv
    import shutil

    import torch

    from engine.captions import import_csv

    folder = tmp_path / "photos"
    folder.mkdir()
    with open(dataset / "captions.csv", newline="") as f:
        names = list(dict.fromkeys(r["image"] for r in csv.DictReader(f)))[:40]
    for n in names:
        shutil.copy2(dataset / "images" / n, folder / n)
    lib = Library.open(tmp_path / "lib", device="cpu")
    lib.add_folders([folder])
    import_csv(lib, dataset / "captions.csv")
    opts = TrainOptions(steps=12, batch_size=32, lr=5e-4, holdout=0.2, eval_every=4,
                        patience=10, crops=1, unlock_image=1, unlock_text=1, activate="never")
    events = train_events(lib, opts)
    result = events[-1].result
    assert result.photos == 26 and "t2i_r1" in result.after
    tuned = load_checkpoint(result.checkpoint, device="cpu")
    assert tuned.config()["unlock_image"] == 1 and tuned.config()["unlock_text"] == 1
    pretrained = create_model({"family": "bundled"}, device="cpu")
    for key in ("image_tower.conv_head.weight",
                "text_tower.0.model.encoder.layer.5.output.dense.weight"):
        assert not torch.equal(tuned.state_dict()[key], pretrained.state_dict()[key]), key
    frozen = "text_tower.0.model.encoder.layer.4.output.dense.weight"
    assert torch.equal(tuned.state_dict()[frozen], pretrained.state_dict()[frozen])
    again = load_checkpoint(result.checkpoint, device="cpu")
    pixels = np.random.default_rng(2).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    assert np.array_equal(tuned.encode_images(pixels), again.encode_images(pixels))
    assert np.array_equal(tuned.encode_texts(["a dog"]), again.encode_texts(["a dog"]))
    cache = next((tmp_path / "lib" / "cache" / "features").glob("bundled-*.npz"))
    with np.load(cache) as z:
        crop_views = [k for k in z.files if k.endswith("c0f")]
    assert len(crop_views) == 26  # every training photo: a mirrored crop besides the plain view
    lib.close()


def test_out_of_range_training_options_are_refused_with_the_reason(shapes_lib):
    lib, _folder, _truth = shapes_lib
    before = lib.active_model_record().version
    with pytest.raises(EngineError, match="held-out share must be between 0 and 1.*crops must"):
        train_events(lib, TrainOptions(holdout=1.5, crops=-1))
    with pytest.raises(EngineError, match="learning rate must be a positive number"):
        train_events(lib, TrainOptions(lr=float("nan")))
    assert lib.active_model_record().version == before and len(lib.models()) == 1


def test_training_another_family_is_judged_against_the_active_model(shapes_lib):
    """Training the bundled model in a library whose active model is another family (after
    trying a CLIP model, say): the new model is judged against the active one on the same
    photos, and the active model stays until the verdict allows a switch."""
    lib, _folder, _truth = shapes_lib
    active = lib.active_model_record().version
    result = lib.train(TrainOptions(family="bundled", steps=4, batch_size=16, holdout=0.25,
                                    eval_every=2, activate="never"))
    assert result.parent == active and result.version != active
    assert set(result.before) == set(result.after) and len(result.before) == 6
    assert result.verdict and lib.active_model_record().version == active
    assert {m.version for m in lib.models()} >= {active, result.version}


def test_reading_the_photos_is_reported_photo_by_photo_before_the_first_step(shapes_lib):
    """A first fine-tune spends most of its time reading photos: it says how far it is."""
    lib, _folder, _truth = shapes_lib
    events = train_events(lib, TrainOptions(**{**OPTS, "steps": 4, "activate": "never"}))
    reading = [e for e in events if e.kind == "reading"]
    first_step = next(i for i, e in enumerate(events) if e.kind == "step")
    assert reading and all(events.index(e) < first_step for e in reading)
    assert [e.done for e in reading] == sorted(e.done for e in reading)
    assert reading[-1].done == reading[-1].total == 48  # every photo: trained, selection, judging
    assert "reading photos 48 of 48" in reading[-1].message


def test_model_versions_are_named_by_what_they_are(shapes_lib):
    lib, _folder, _truth = shapes_lib
    result = lib.train(TrainOptions(**{**OPTS, "steps": 4, "activate": "always"}))
    titles = {m.version: m.title for m in lib.models()}
    assert titles[result.version].startswith(f"Tuned on {result.photos} of your photos · ")
    assert titles[result.parent] == "Untrained scratch model"
    assert lib.status().model_title == titles[result.version]
    assert all(result.version[-6:] not in t for t in titles.values())  # never a hash


def test_photos_marked_wrong_for_a_caption_are_pushed_away_from_it(shapes_lib):
    """The same fine-tune, with and without the person's wrong marks: with them, the caption
    scores its own photos further above the photos marked wrong for it."""
    lib, folder, truth = shapes_lib
    query = "a red circle"
    right = [lib.photo_by_path(folder / n).id for n, t in truth.items() if t == ("red", "circle")]
    wrong = [lib.photo_by_path(folder / n).id for n, t in truth.items() if t == ("red", "square")]

    def margin(version: str) -> float:
        model = lib.registry.load(lib.registry.get(version), "cpu")
        t = model.encode_texts([query])[0]

        def mean_cos(ids):
            px = np.stack([decode_file(Path(lib.photo(i).path), size=model.input_size).pixels
                           for i in ids])
            v = model.encode_images(px)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            return float((v @ (t / np.linalg.norm(t))).mean())
        return mean_cos(right) - mean_cos(wrong)

    opts = dict(activate="never", eval_every=60)
    _events, plain = _run(lib, **opts)
    for pid in wrong:
        lib.mark(query, pid, False)
    _events, marked = _run(lib, **opts)
    assert marked.version != plain.version
    assert margin(marked.version) > margin(plain.version) + 0.01
