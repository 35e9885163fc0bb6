"""CLIP weights already on the computer: found in a Hugging Face cache and in rclip's folder,
named, never run; a library switches to one and back, and search works with both."""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.errors import EngineError
from engine.models import create_model
from engine.models.discover import discover, hf_hub_cache, rclip_data_dir
from engine.tryout import find, go_back, try_model

open_clip = pytest.importorskip("open_clip")

# A tiny CLIP with open_clip's own conventions (64-wide attention heads), so that nothing but its
# tensors is needed to name it.
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 1,
                 "layers": 2},
}


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home folder of the test's own: every place discovery looks is inside it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "HF_HOME", "HF_HUB_CACHE",
                "HUGGINGFACE_HUB_CACHE", "RCLIP_DATADIR"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def tiny_clip():
    from open_clip.model import CLIP

    torch.manual_seed(0)
    return CLIP(**TINY_CLIP).eval()


def _hub_snapshot(hub: Path, repo: str) -> Path:
    snap = hub / f"models--{repo.replace('/', '--')}" / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    return snap


def save_in_hub(model, hub: Path, repo: str = "someone/tiny-clip") -> Path:
    """The layout open_clip's downloads leave in the Hugging Face cache."""
    from safetensors.torch import save_file

    snap = _hub_snapshot(hub, repo)
    path = snap / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    (snap / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": TINY_CLIP, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
    return path


class RunsCode:
    """A pickle whose loading would write a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "this ran"))


@pytest.fixture
def computer(home, tiny_clip):
    """Weights as other tools leave them: the tiny CLIP in the Hugging Face cache and in rclip's
    folder, a pickle that would run code in rclip's folder, and unrelated files."""
    hub = hf_hub_cache()
    assert hub == home / ".cache" / "huggingface" / "hub"
    in_hub = save_in_hub(tiny_clip, hub)
    rclip = rclip_data_dir()
    rclip.mkdir(parents=True)
    in_rclip = rclip / "tiny-clip.pt"
    torch.save(tiny_clip.state_dict(), in_rclip)
    marker = home / "PWNED"
    torch.save({"state_dict": RunsCode(marker), "padding": torch.zeros(100_000)},
               rclip / "evil.pt")
    downloads = home / "Downloads"
    downloads.mkdir()
    torch.save({"weight": torch.zeros(100_000)}, downloads / "some-other-model.pt")
    (downloads / "notes.bin").write_bytes(b"x" * 100_000)
    return {"hub": in_hub, "rclip": in_rclip, "evil": rclip / "evil.pt", "marker": marker}


def test_discovery_finds_the_tiny_clip_in_both_places_and_never_runs_a_pickle(computer):
    result = discover()
    by_path = {f.path: f for f in result.found}
    assert set(by_path) == {str(computer["hub"]), str(computer["rclip"])}
    hub, rclip = by_path[str(computer["hub"])], by_path[str(computer["rclip"])]
    assert (hub.place, hub.identified_by) == ("Hugging Face cache", "open_clip_config.json")
    assert (rclip.place, rclip.identified_by) == ("rclip", "tensor shapes")
    for found in (hub, rclip):
        assert found.model_config == TINY_CLIP  # the architecture, read off the file
        assert found.pretrained == "unknown" and found.parameters > 3_000_000
    assert (hub.mean, hub.std, rclip.mean) == ((0.5,) * 3, (0.5,) * 3, None)  # OpenAI's: None
    skipped = {s.path: s.reason for s in result.skipped}
    assert "would run code" in skipped[str(computer["evil"])]
    assert not computer["marker"].exists()
    assert any("not a CLIP model" in r for p, r in skipped.items()
               if p.endswith("some-other-model.pt"))
    assert not any(p.endswith("notes.bin") for p in [*by_path, *skipped])  # not weights at all
    places = dict(result.searched)
    assert set(places) == {"Hugging Face cache", "rclip", "Downloads"}


def test_a_discovered_model_computes_what_the_original_clip_computes(computer, tiny_clip):
    found = {f.place: f for f in discover().found}["rclip"]
    model = create_model(found.model(), device="cpu")
    with torch.no_grad():
        raw = tiny_clip.encode_text(model.tokenizer(["a red circle"]))
    assert np.allclose(model.encode_texts(["a red circle"]),
                       torch.nn.functional.normalize(raw, dim=-1).numpy(), atol=1e-5)


def _sparse_safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """A safetensors file with the right header and no data written (a sparse file): discovery
    reads only the header, so a full-size model costs no disk."""
    header, offset = {}, 0
    for name, shape in sorted(shapes.items()):
        size = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset,
                                                                                offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)


def _hostile_torchscript(path: Path, marker: Path) -> None:
    """What looks like OpenAI's TorchScript archive, its pickle built to write a marker file."""
    import pickle
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ViT-B-32/code/__torch__/model.py", "def forward(self): pass\n")
        z.writestr("ViT-B-32/data.pkl", pickle.dumps(RunsCode(marker), protocol=4))
        z.writestr("ViT-B-32/padding", b"\0" * 100_000)


def test_known_repositories_are_named_and_a_hostile_torchscript_archive_is_left_alone(home):
    model = open_clip.create_model("ViT-B-32-quickgelu", device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    snap = _hub_snapshot(hf_hub_cache(), "timm/vit_base_patch32_clip_224.openai")
    _sparse_safetensors(snap / "open_clip_model.safetensors", shapes)
    clip_cache = home / ".cache" / "clip"
    clip_cache.mkdir(parents=True)
    marker = home / "PWNED"
    _hostile_torchscript(clip_cache / "ViT-B-32.pt", marker)

    siglip = open_clip.create_model("ViT-B-16-SigLIP", device="meta")
    _sparse_safetensors(_hub_snapshot(hf_hub_cache(), "timm/ViT-B-16-SigLIP")
                        / "open_clip_model.safetensors",
                        {k: tuple(v.shape) for k, v in siglip.state_dict().items()})

    large = open_clip.create_model("ViT-L-14", device="meta")
    _sparse_safetensors(_hub_snapshot(hf_hub_cache(), "laion/CLIP-ViT-L-14-laion2B-s32B-b82K")
                        / "open_clip_model.safetensors",
                        {k: tuple(v.shape) for k, v in large.state_dict().items()})

    result = discover()
    by_tag = {f.pretrained: f for f in result.found}
    openai, laion = by_tag["openai"], by_tag["laion2b_s32b_b82k"]
    assert (openai.arch, openai.pretrained) == ("ViT-B-32-quickgelu", "openai")
    assert openai.identified_by == "repository name" and openai.speed == "fast"
    assert openai.model() == {"family": "openclip", "arch": "ViT-B-32-quickgelu",
                              "weights": openai.path}
    assert (laion.arch, laion.pretrained, laion.speed) == ("ViT-L-14", "laion2b_s32b_b82k",
                                                           "slow")
    # trained on pixels normalised its own way: the model is built to match
    assert laion.model()["mean"] == [0.5] * 3 and laion.model()["std"] == [0.5] * 3
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert "TorchScript archive holding more than weights" in reasons["ViT-B-32.pt"]
    assert not marker.exists()
    # its tokenizer would come from Hugging Face: not offered, and nothing is fetched
    assert "needs the tokenizer timm/ViT-B-16-SigLIP" in reasons["open_clip_model.safetensors"]


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # making the archive
def test_openai_style_torchscript_weights_are_used_without_running_the_archive(
        home, tiny_clip, shapes_lib):
    """~/.cache/clip holds TorchScript archives; their weights are read from the pickle alone
    and copied to a safetensors file in the library when the model is tried."""
    lib, folder, _truth = shapes_lib
    clip_cache = home / ".cache" / "clip"
    clip_cache.mkdir(parents=True)
    inputs = {"encode_image": torch.zeros(1, 3, 32, 32),
              "encode_text": torch.zeros(1, 16, dtype=torch.long)}
    like_openai = copy.deepcopy(tiny_clip)
    for name, value in (("input_resolution", 32), ("context_length", 16), ("vocab_size", 49408)):
        if hasattr(like_openai, name):
            delattr(like_openai, name)
        like_openai.register_buffer(name, torch.tensor(value))  # OpenAI's archives carry these
    torch.jit.trace_module(like_openai, inputs, strict=False).save(str(clip_cache / "tiny.pt"))
    [found] = discover().found
    assert found.place == "CLIP cache" and found.torchscript
    assert found.model_config == TINY_CLIP
    with pytest.raises(EngineError, match="copy of its weights"):
        found.model()

    trial = try_model(lib, found)
    [copied] = (lib.root / "models" / "_clip").glob("tiny-*.safetensors")
    assert lib.active_model_record().version == trial.version
    model = lib.model
    assert model.weights == str(copied)
    with torch.no_grad():
        raw = tiny_clip.encode_text(model.tokenizer(["a red circle"]))
    assert np.allclose(model.encode_texts(["a red circle"]),
                       torch.nn.functional.normalize(raw, dim=-1).numpy(), atol=1e-5)
    assert lib.search(image=folder / "011.png", k=1)[0].path.endswith("011.png")


def test_extra_folders_are_searched_and_a_missing_one_is_reported(home, tmp_path, tiny_clip):
    mine = tmp_path / "my models" / "clip"
    mine.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in tiny_clip.state_dict().items()},
                "epoch": 3}, mine / "epoch_3.pt")  # a training checkpoint of open_clip's
    result = discover([tmp_path / "my models", tmp_path / "nowhere"], defaults=False)
    [found] = result.found
    assert found.model_config == TINY_CLIP and found.place == "folder"
    assert [s.reason for s in result.skipped] == ["no such folder"]


def test_a_library_switches_to_a_discovered_model_and_back(computer, shapes_lib):
    lib, folder, _truth = shapes_lib
    before = lib.active_model_record().version
    found = find("1")
    events = []
    trial = try_model(lib, found, progress=events.append)
    assert lib.active_model_record().version == trial.version != before
    assert lib.active_model_record().family == "openclip"
    assert lib.model.mean == (0.5, 0.5, 0.5)  # from the open_clip_config.json beside it
    assert trial.previous == before and trial.photos == 48  # every captioned photo
    assert set(trial.before) == set(trial.after) and "t2i_r10" in trial.after
    assert trial.verdict and events  # the re-embedding reported its progress
    assert lib.search(image=folder / "005.png", k=1)[0].path.endswith("005.png")
    assert len(lib.search("a red circle", k=48)) == 48

    go_back(lib, trial)
    assert lib.active_model_record().version == before
    assert lib.search(image=folder / "007.png", k=1)[0].path.endswith("007.png")
    assert trial.version in {m.version for m in lib.models()}  # kept: trying again is quick


def test_the_command_line_lists_and_tries_discovered_models(computer, shapes_lib, capsys):
    lib, _folder, _truth = shapes_lib
    before = lib.active_model_record().version
    root = str(lib.root)
    lib.close()
    assert main(["models", "discover", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed["found"]) == 2 and listed["skipped"][0]["reason"]
    assert main(["models", "discover", "--json", "--in", str(lib.root / "nowhere")]) == 0
    assert {"path": str(lib.root / "nowhere"), "place": "folder", "reason": "no such folder"} in (
        json.loads(capsys.readouterr().out)["skipped"])
    assert main(["models", "discover"]) == 0
    out = capsys.readouterr().out
    assert "custom CLIP (ViT 64 wide, 2 layers, 32 px)" in out and "would run code" in out

    assert main(["models", "try", str(computer["rclip"]), "--library", root,
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "held-out recall" in out and f"chikaku models activate {before}" in out
    assert main(["models", "try", "7", "--library", root]) == 1
    assert "there is no CLIP model number 7" in capsys.readouterr().err
    assert main(["models", "activate", before, "--library", root, "--device", "cpu"]) == 0
