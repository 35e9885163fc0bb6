"""The dual-encoder interface every model family implements.

A family splits each side into a *tower* (image or text -> feature embedding) and a *head*
(feature embedding -> L2-normalised point in the shared representation space). Frozen towers let
training cache features; search only ever calls ``encode_images`` and ``encode_texts``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch
from torch import nn

from .devices import gpu_present, pick_device, usable_device  # noqa: F401 (read from here too)

HEADS = ("image_proj.", "text_proj.")  # parameter names of the heads every family has


class DualEncoder(nn.Module):
    """Base class. Subclasses set ``family``, ``dim``, ``input_size``, ``mean`` and ``std``."""

    family: str = "base"
    dim: int = 0
    input_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __init__(self) -> None:
        super().__init__()
        self.parent: str | None = None

    # -- towers (feature embeddings) ------------------------------------------------------------
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, F) image feature embedding."""
        raise NotImplementedError

    def text_features(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    # -- towers split for training -------------------------------------------------------------
    # Training runs the frozen part of each tower once and caches its output (the *stem*); each
    # step then runs only the trainable rest. With both towers frozen the stem is the feature
    # embedding itself and the rest is nothing.
    def cacheable(self) -> bool:
        """Whether training may cache stems instead of running the towers on every step: by
        default only when nothing but the heads is trained."""
        return all(not p.requires_grad for n, p in self.named_parameters()
                   if not n.startswith(HEADS))

    def image_stem(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, ...) output of the image tower's frozen part."""
        return self.image_features(pixels)

    def image_rest(self, stems: torch.Tensor) -> torch.Tensor:
        """(B, ...) stems -> (B, F) image features, through the tower's trainable part."""
        return stems.to(self.device)

    def text_stem(self, texts: list[str]) -> list[torch.Tensor]:
        """One tensor per text: the output of the text tower's frozen part."""
        return list(self.text_features(texts))

    def text_rest(self, stems: list[torch.Tensor]) -> torch.Tensor:
        """Stems (one per text) -> (B, F) text features, through the trainable part."""
        return torch.stack(stems).to(self.device)

    # -- heads (into the shared space) ----------------------------------------------------------
    def image_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def text_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- what search uses -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def normalise_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.inference_mode()
    def encode_images(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, dim) float32, L2-normalised."""
        was_training = self.training
        if was_training:  # walking every module costs milliseconds: only when needed
            self.eval()
        try:
            if isinstance(pixels, np.ndarray):
                pixels = np.require(pixels, dtype=np.uint8, requirements=["C", "W"])
            t = torch.as_tensor(pixels)
            with self._autocast():
                return self.image_head(self.image_features(t)).float().cpu().numpy()
        finally:
            if was_training:
                self.train()

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        was_training = self.training
        if was_training:
            self.eval()
        try:
            with self._autocast():
                return self.text_head(self.text_features(list(texts))).float().cpu().numpy()
        finally:
            if was_training:
                self.train()

    def _autocast(self):
        """Mixed precision on CUDA; full precision on the CPU."""
        dev = self.device
        return torch.autocast("cuda", dtype=torch.float16, enabled=dev.type == "cuda")

    # -- identity -------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model's architecture (weights aside)."""
        return {"family": self.family}

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint must carry (frozen pretrained towers are not repeated)."""
        return {k: v for k, v in self.state_dict().items()}

    def heads_and_unlocked_state(self) -> dict[str, torch.Tensor]:
        """For pretrained towers: the heads and any unlocked tower weights, nothing frozen."""
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items()
                if k.startswith(HEADS) or k in trainable}

    @property
    def version(self) -> str:
        """A stable name for exactly this model: family, config and trained weights."""
        cached = getattr(self, "_version_cache", None)
        if cached is not None:
            return cached
        h = hashlib.blake2b(digest_size=6)
        h.update(json.dumps(self.config(), sort_keys=True).encode())
        for k, v in sorted(self.trained_state().items()):
            h.update(k.encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
        v = f"{self.family}-{h.hexdigest()}"
        self._version_cache = v
        return v

    def forget_version(self) -> None:
        """Call after the weights change (training) so the version is recomputed."""
        self._version_cache = None


def l2n(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)
