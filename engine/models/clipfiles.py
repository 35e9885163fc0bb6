"""What a weights file holds, read without running anything in it: tensor names and shapes, the
CLIP architecture they describe, and whether they fit a given one exactly.

A safetensors file is read for its header only; a PyTorch file is loaded with
``torch.load(weights_only=True)``, memory-mapped where the format allows, so its tensors are not
read. A file whose loading would run code is refused with the reason.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
from functools import cache
from pathlib import Path

from ..errors import ModelLoadError
from . import torchscript

MAX_HEADER = 64 * 1024**2  # a safetensors header (names and shapes) is far below this
MAX_LEGACY_BYTES = 2 * 1024**3  # an old-format (not zip) PyTorch file is read whole

Shapes = dict[str, tuple[int, ...]]


class NotWeights(ModelLoadError):
    """A file that is not model weights at all: not worth reporting as skipped."""


def plain_clip(cfg: dict) -> bool:
    """A config open_clip's plain CLIP class builds (no Hugging Face text tower, no timm trunk):
    what a config carried with the weights can describe."""
    text, vision = cfg.get("text_cfg") or {}, cfg.get("vision_cfg") or {}
    return (isinstance(text, dict) and isinstance(vision, dict) and not cfg.get("custom_text")
            and not text.get("hf_model_name") and not vision.get("timm_model_name"))


def named_config(cfg: dict) -> str | None:
    """The open_clip architecture whose config is this one (the shortest name when several)."""
    import open_clip

    want = _comparable(cfg)
    names = [n for n in open_clip.list_models()
             if _comparable(open_clip.get_model_config(n) or {}) == want]
    return min(names, key=lambda n: (len(n), n)) if names else None


def _comparable(cfg: dict) -> str:
    """A config with its defaults filled in, as one string: two configs that build the same
    model compare equal (activation aside: QuickGELU is a property of the pretraining)."""
    cfg = json.loads(json.dumps(cfg))
    cfg.pop("quick_gelu", None)
    vision, text = cfg.get("vision_cfg") or {}, cfg.get("text_cfg") or {}
    if isinstance(vision.get("image_size"), list):
        vision["image_size"] = vision["image_size"][0]
    for side in (vision, text):
        side.setdefault("mlp_ratio", 4.0)
        side["mlp_ratio"] = float(side["mlp_ratio"])
        side.setdefault("ls_init_value", None)
    vision.setdefault("head_width", 64)
    text.setdefault("heads", 8)
    return json.dumps(cfg, sort_keys=True)


def fits(shapes: dict[str, tuple[int, ...]], arch: str | dict | None) -> bool:
    """Whether the file's tensors are exactly the architecture's (names and shapes)."""
    if arch is None:
        return False
    expected = _expected_shapes(json.dumps(arch, sort_keys=True) if isinstance(arch, dict)
                                else arch)
    return expected is not None and expected == shapes


@cache
def _expected_shapes(arch: str) -> dict[str, tuple[int, ...]] | None:
    """Tensor names and shapes of an architecture (a name, or a config as JSON), built on the
    meta device: nothing is allocated."""
    import logging

    import open_clip
    import torch

    root = logging.getLogger()
    was, root.disabled = root.disabled, True  # open_clip warns "initialized randomly" here
    try:
        with torch.device("meta"):
            if arch.startswith("{"):
                from open_clip.model import CLIP

                model = CLIP(**json.loads(arch))
            else:
                model = open_clip.create_model(arch, device="meta")
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}
    except Exception:  # an architecture that cannot be built here (a missing extra package)
        return None
    finally:
        root.disabled = was


def infer_config(shapes: dict[str, tuple[int, ...]]) -> dict | None:
    """The CLIP config (a ViT image tower, a plain text tower) a state dict's shapes describe,
    or None when they are of another kind. Heads are not in the shapes: open_clip's convention
    (64-wide heads) is taken, which is what its own configs use."""
    try:
        width, _, patch, _ = shapes["visual.conv1.weight"]
        grid = math.isqrt(shapes["visual.positional_embedding"][0] - 1)
        vocab, text_width = shapes["token_embedding.weight"]
        context = shapes["positional_embedding"][0]
        embed_dim = shapes["text_projection"][1]
    except (KeyError, ValueError):
        return None

    def layers(prefix: str) -> int:
        return len({k.split(".")[len(prefix.split("."))] for k in shapes
                    if k.startswith(prefix + ".")})

    def mlp(prefix: str, w: int) -> float:
        return shapes.get(f"{prefix}.0.mlp.c_fc.weight", (4 * w,))[0] / w

    v_layers = layers("visual.transformer.resblocks")
    t_layers = layers("transformer.resblocks")
    if not v_layers or not t_layers:
        return None
    vision = {"image_size": grid * patch, "layers": v_layers, "width": width,
              "patch_size": patch}
    text = {"context_length": context, "vocab_size": vocab, "width": text_width,
            "heads": max(1, text_width // 64), "layers": t_layers}
    v_mlp, t_mlp = mlp("visual.transformer.resblocks", width), mlp("transformer.resblocks",
                                                                   text_width)
    if v_mlp != 4.0:
        vision["mlp_ratio"] = v_mlp
    if t_mlp != 4.0:
        text["mlp_ratio"] = t_mlp
    if width < 64:
        vision["head_width"] = width
    return {"embed_dim": embed_dim, "vision_cfg": vision, "text_cfg": text}


def is_clip(shapes: dict[str, tuple[int, ...]]) -> bool:
    has_image = any(k.startswith("visual.") for k in shapes)
    has_text = "token_embedding.weight" in shapes or any(k.startswith("text.") for k in shapes)
    return has_image and has_text


# -- reading, safely --------------------------------------------------------------------------------
def read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a weights file, read without running anything in it: the
    header of a safetensors file; a PyTorch file loaded with ``weights_only=True`` (memory-mapped
    where the format allows). Raises ModelLoadError with the reason otherwise."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise ModelLoadError(f"cannot read it: {e.strerror or e}") from e
    if path.suffix.lower() == ".safetensors":
        return _safetensors_shapes(path)
    if head[:4] == b"PK\x03\x04":
        return _zip_shapes(path)
    if head[:1] == b"\x80":  # a pickle: PyTorch's older format
        if path.stat().st_size > MAX_LEGACY_BYTES:
            raise ModelLoadError("an old-format PyTorch file too large to read safely")
        return _torch_shapes(path, mmap=False)
    raise NotWeights("not a PyTorch or safetensors weights file")


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > MAX_HEADER:
                raise ModelLoadError("not a safetensors file (its header is implausibly large)")
            header = json.loads(f.read(n))
    except (OSError, struct.error, ValueError, RecursionError) as e:
        raise ModelLoadError(f"not a readable safetensors file ({e})") from e
    if not isinstance(header, dict):
        raise ModelLoadError("not a readable safetensors file")
    try:
        return _unwrapped({k: tuple(int(d) for d in v["shape"]) for k, v in header.items()
                           if k != "__metadata__"})
    except (TypeError, KeyError, ValueError) as e:
        raise ModelLoadError("not a readable safetensors file (a malformed header)") from e


def is_torchscript_file(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return torchscript.is_torchscript(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _zip_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile) as e:
        raise ModelLoadError(f"a damaged archive ({e})") from e
    if torchscript.is_torchscript(names):  # OpenAI's clip package: read without its code
        return torchscript.shapes(path)
    if not any(n.endswith("data.pkl") for n in names):
        raise NotWeights("a zip file that is not a PyTorch weights file")
    return _torch_shapes(path, mmap=True)


def _torch_shapes(path: Path, mmap: bool) -> dict[str, tuple[int, ...]]:
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise ModelLoadError("not loaded: it holds more than weights (a pickle that would run "
                             "code when read), so it is left alone") from e
    except Exception as e:  # a damaged or truncated file
        raise ModelLoadError(f"not a readable PyTorch file ({type(e).__name__})") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelLoadError("not a state dict of weights")
    return _unwrapped({k: tuple(v.shape) for k, v in obj.items()
                       if isinstance(k, str) and isinstance(v, torch.Tensor)})


def _unwrapped(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Names as open_clip loads them: a "module." prefix (saved from several processes) off."""
    if shapes and all(k.startswith("module.") for k in shapes):
        return {k[len("module."):]: v for k, v in shapes.items()}
    return shapes
