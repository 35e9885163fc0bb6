"""Real CLIP weights through open_clip (the optional ``openclip`` extra), from a local file.

Nothing is downloaded: the architecture is one of open_clip's named configs (``ViT-B-32`` …) or
a config dict carried inside our own checkpoint, and the weights come from a file the person
already has. Towers are locked by default; the last N transformer blocks of either tower can be
unlocked. Each side gets a zero-initialised residual head, so an untrained model is exactly the
original CLIP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelLoadError
from .base import DualEncoder, l2n

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _import_open_clip():
    try:
        import open_clip
    except ImportError as e:
        raise ModelLoadError("CLIP models need the optional extra: "
                             "pip install 'chikaku[openclip]'") from e
    return open_clip


def _build(arch: str, weights: Path, model_config: dict | None):
    open_clip = _import_open_clip()
    if not weights.is_file():
        raise ModelLoadError(f"CLIP weights file not found: {weights}")
    try:
        if model_config is not None:
            from open_clip.model import CLIP

            model = CLIP(**model_config)
            open_clip.load_checkpoint(model, str(weights), weights_only=True)
            ctx = model_config.get("text_cfg", {}).get("context_length", 77)
            tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=ctx)
        else:
            if arch not in open_clip.list_models():
                raise ModelLoadError(f"unknown CLIP architecture {arch!r}")
            model = open_clip.create_model(arch, pretrained=str(weights), weights_only=True)
            tokenizer = open_clip.get_tokenizer(arch)
    except ModelLoadError:
        raise
    except Exception as e:  # wrong architecture, damaged or hostile file
        raise ModelLoadError(f"cannot load CLIP weights {weights} as {arch}: "
                             f"{type(e).__name__}: {str(e)[:300]}") from e
    return model, tokenizer


def _normalisation(mean, std) -> tuple[list[float], list[float]] | None:
    if mean is None and std is None:
        return None
    try:
        pair = [float(v) for v in mean], [float(v) for v in std]
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"a CLIP model's mean and std are three numbers each: {e}") from e
    if len(pair[0]) != 3 or len(pair[1]) != 3 or min(pair[1]) <= 0:
        raise ModelLoadError("a CLIP model's mean and std are three numbers each (std above 0)")
    return pair


def _blocks(module: nn.Module) -> list[nn.Module]:
    trunk = getattr(module, "transformer", None)
    return list(getattr(trunk, "resblocks", [])) if trunk is not None else []


class OpenClipDualEncoder(DualEncoder):
    family = "openclip"

    def __init__(self, arch: str, weights: str, unlock_image: int = 0, unlock_text: int = 0,
                 model_config: dict | None = None, mean: list[float] | None = None,
                 std: list[float] | None = None, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.arch, self.weights = arch, str(Path(weights).expanduser().resolve())
        self.unlock_image, self.unlock_text = int(unlock_image), int(unlock_text)
        self.model_config = model_config
        self.clip, self.tokenizer = _build(arch, Path(self.weights), model_config)
        self.clip.requires_grad_(False)
        self._unlock()
        size = self.clip.visual.image_size
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        cfg = getattr(self.clip.visual, "preprocess_cfg", None) or {}
        # the pixel statistics the weights were trained with, when the config names them (open_clip
        # knows them only from a pretraining tag, and loading a file gives it none)
        self.normalisation = _normalisation(mean, std)
        self.mean = tuple(mean if mean is not None else cfg.get("mean", OPENAI_MEAN))
        self.std = tuple(std if std is not None else cfg.get("std", OPENAI_STD))
        with torch.no_grad():
            self.dim = int(self.clip.encode_text(self.tokenizer(["a"])).shape[-1])
        self.image_proj = nn.Linear(self.dim, self.dim)
        self.text_proj = nn.Linear(self.dim, self.dim)
        for lin in (self.image_proj, self.text_proj):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.to(torch.device(device))
        self.eval()

    def _unlock(self) -> None:
        visual, n_img, n_txt = self.clip.visual, self.unlock_image, self.unlock_text
        if n_img:
            for block in _blocks(visual)[-n_img:]:
                block.requires_grad_(True)
            for name in ("ln_post", "proj"):
                part = getattr(visual, name, None)
                if isinstance(part, (nn.Module, nn.Parameter)):
                    part.requires_grad_(True)
        if n_txt:
            for block in _blocks(self.clip)[-n_txt:]:
                block.requires_grad_(True)
            self.clip.ln_final.requires_grad_(True)
            if isinstance(self.clip.text_projection, nn.Parameter):
                self.clip.text_projection.requires_grad_(True)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(self.normalise_pixels(pixels))

    def text_features(self, texts: list[str]) -> torch.Tensor:
        return self.clip.encode_text(self.tokenizer(list(texts)).to(self.device))

    def image_head(self, features: torch.Tensor) -> torch.Tensor:
        f = l2n(features.float())
        return l2n(f + self.image_proj(f))

    def text_head(self, features: torch.Tensor) -> torch.Tensor:
        f = l2n(features.float())
        return l2n(f + self.text_proj(f))

    def config(self) -> dict[str, Any]:
        cfg = {"family": self.family, "arch": self.arch, "weights": self.weights,
               "unlock_image": self.unlock_image, "unlock_text": self.unlock_text}
        if self.model_config is not None:
            cfg["model_config"] = self.model_config
        if self.normalisation is not None:
            cfg["mean"], cfg["std"] = self.normalisation
        return cfg

    def trained_state(self) -> dict[str, torch.Tensor]:
        return self.heads_and_unlocked_state()
