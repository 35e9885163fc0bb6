"""Contrastive losses: CLIP's symmetric InfoNCE, in one process or across several.

Across processes, every process gathers the others' embeddings (without gradient) and puts its
own, with gradient, in its slot; each computes the loss over the whole global batch. The gradient
reaching a process's local embeddings is then exactly the single-process gradient for that slice,
so summing the processes' parameter gradients (as DistributedDataParallel does) gives the
gradient of one process holding the whole batch.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100.0)


class LogitScale(nn.Module):
    """A learnable temperature: scale = exp(t), t from log(1/0.07), clamped at log(100)."""

    def __init__(self, init: float = INIT_LOGIT_SCALE) -> None:
        super().__init__()
        self.t = nn.Parameter(torch.tensor(float(init)))

    def forward(self) -> torch.Tensor:
        return self.t.clamp(max=MAX_LOGIT_SCALE).exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        self.t.clamp_(max=MAX_LOGIT_SCALE)


def clip_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE for L2-normalised (B, D) image and text embeddings; pair i is (i, i)."""
    logits = scale * image @ text.T
    target = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x from every process in rank order; only the local part carries gradient."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


def gathered_clip_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor
                       ) -> torch.Tensor:
    """clip_loss over the global batch of all processes (each holds an equal local batch)."""
    return clip_loss(gather_with_grad(image), gather_with_grad(text), scale)
