"""Small towers trained from nothing: for large captioned collections, and tiny ones for tests.

The text side has its own tokenizer (lower-cased words hashed into a fixed number of buckets,
so there is no vocabulary file to keep in step with the weights).
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import torch
from torch import nn

from .base import DualEncoder, l2n

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def tokenize(text: str, buckets: int) -> list[int]:
    """Words and word pairs, hashed to ids in [1, buckets). 0 is padding."""
    words = _WORD.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    return [1 + zlib.crc32(g.encode()) % (buckets - 1) for g in grams]


class ScratchDualEncoder(DualEncoder):
    family = "scratch"
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(self, dim: int = 128, width: int = 64, input_size: int = 96,
                 buckets: int = 1 << 15, seed: int = 0, device: torch.device | str = "cpu"):
        super().__init__()
        self.dim, self.width, self.input_size, self.buckets, self.seed = (
            dim, width, input_size, buckets, seed)
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            c = width
            self.image_tower = nn.Sequential(
                nn.Conv2d(3, c // 2, 5, stride=2, padding=2), nn.BatchNorm2d(c // 2), nn.GELU(),
                nn.Conv2d(c // 2, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.GELU(),
                nn.Conv2d(c, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.GELU(),
                nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.BatchNorm2d(2 * c), nn.GELU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            )
            self.text_tower = nn.EmbeddingBag(buckets, 2 * c, mode="mean", padding_idx=0)
            self.image_proj = nn.Linear(2 * c, dim)
            self.text_proj = nn.Linear(2 * c, dim)
        finally:
            torch.random.set_rng_state(gen_state)
        self.to(torch.device(device))
        self.eval()

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_tower(self.normalise_pixels(pixels))

    def text_features(self, texts: list[str]) -> torch.Tensor:
        ids = [tokenize(t, self.buckets) or [0] for t in texts]
        flat = torch.tensor([i for seq in ids for i in seq], dtype=torch.long, device=self.device)
        offsets = torch.tensor([0] + [len(s) for s in ids[:-1]], device=self.device).cumsum(0)
        return self.text_tower(flat, offsets)

    def image_head(self, features: torch.Tensor) -> torch.Tensor:
        return l2n(self.image_proj(features))

    def text_head(self, features: torch.Tensor) -> torch.Tensor:
        return l2n(self.text_proj(features))

    def config(self) -> dict[str, Any]:
        return {"family": self.family, "dim": self.dim, "width": self.width,
                "input_size": self.input_size, "buckets": self.buckets, "seed": self.seed}
