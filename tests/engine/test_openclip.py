"""CLIP weights from a local file (the openclip family), with a tiny CLIP architecture so the
test needs no download: load, search, fine-tune with an unlocked block, WiSE-FT, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import TrainOptions
from engine.errors import ModelLoadError
from engine.models import create_model, load_checkpoint, save_checkpoint
from tests.events import train_events

open_clip = pytest.importorskip("open_clip")

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2,
                 "layers": 2},
}


@pytest.fixture
def clip_weights(tmp_path):
    """A CLIP the person "has": here a tiny random one saved as a plain state dict."""
    from open_clip.model import CLIP

    torch.manual_seed(0)
    path = tmp_path / "tiny-clip.pt"
    torch.save(CLIP(**TINY_CLIP).state_dict(), path)
    return path


def _config(weights, **kw):
    return {"family": "openclip", "arch": "tiny", "weights": str(weights),
            "model_config": TINY_CLIP, **kw}


def test_untrained_model_is_exactly_the_original_clip(clip_weights):
    model = create_model(_config(clip_weights), device="cpu")
    pixels = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        raw = model.clip.encode_image(model.normalise_pixels(torch.as_tensor(pixels)))
    assert np.allclose(model.encode_images(pixels),
                       torch.nn.functional.normalize(raw, dim=-1).numpy(), atol=1e-6)
    assert model.encode_texts(["a red circle"]).shape == (1, 32)


def test_bad_weights_are_clear_errors_and_nothing_is_unpickled(tmp_path, clip_weights):
    with pytest.raises(ModelLoadError, match="not found"):
        create_model(_config(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError, match="cannot load CLIP weights"):
        create_model(_config(tmp_path / "junk.pt"))

    class Evil:
        def __reduce__(self):
            return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelLoadError):
        create_model(_config(tmp_path / "evil.pt"))
    assert not (tmp_path / "PWNED").exists()
    wrong = {**TINY_CLIP, "embed_dim": 48}
    with pytest.raises(ModelLoadError, match="cannot load CLIP weights"):
        create_model({**_config(clip_weights), "model_config": wrong})


def test_clip_in_a_library_fine_tunes_with_an_unlocked_block_and_wise_ft(shapes_lib,
                                                                        clip_weights):
    lib, folder, truth = shapes_lib
    version = lib.add_model(_config(clip_weights))
    assert lib.active_model_record().version == version
    assert lib.search(image=folder / "005.png", k=1)[0].path.endswith("005.png")

    opts = TrainOptions(steps=60, batch_size=32, lr=3e-3, holdout=0.25, eval_every=10,
                        patience=10, unlock_text=1, activate="never")
    result = train_events(lib, opts)[-1].result
    assert result.after["t2i_r5"] > result.before["t2i_r5"]
    tuned = load_checkpoint(result.checkpoint, device="cpu")
    assert tuned.config()["unlock_text"] == 1
    assert any(k.startswith("clip.transformer.resblocks.1.") for k in tuned.trained_state())
    original = create_model(_config(clip_weights, unlock_text=1), device="cpu")
    key = "clip.transformer.resblocks.1.mlp.c_fc.weight"
    assert not torch.equal(tuned.state_dict()[key], original.state_dict()[key])  # it learned

    half = train_events(lib, TrainOptions(**{**opts.__dict__, "wise_alpha": 0.5}))[-1].result
    mid = load_checkpoint(half.checkpoint, device="cpu")
    expected = (original.state_dict()[key] + tuned.state_dict()[key]) / 2
    assert torch.allclose(mid.state_dict()[key], expected, atol=1e-6)


def test_clip_checkpoint_round_trip(tmp_path, clip_weights):
    model = create_model(_config(clip_weights, unlock_image=1), device="cpu")
    with torch.no_grad():
        model.image_proj.weight.normal_(0, 0.05)
        model.clip.visual.transformer.resblocks[-1].mlp.c_fc.bias.add_(0.1)
    model.forget_version()
    save_checkpoint(model, tmp_path / "ck")
    again = load_checkpoint(tmp_path / "ck", device="cpu")
    pixels = np.random.default_rng(3).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    assert np.array_equal(model.encode_images(pixels), again.encode_images(pixels))
