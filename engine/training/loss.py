"""Contrastive losses: CLIP's symmetric InfoNCE, in one process or shared across several.

Across processes (``sharded_clip_loss``), each process holds a contiguous slice of the global
batch. It gathers every slice, with gradient (``gather_with_grad``), and scores only its own rows
against the whole batch: its share of the loss. The shares sum to the one-process loss of the
whole batch, and gathering sends each share's gradient back to the process whose embeddings it
came from. Training backpropagates ``world size x share``, because DistributedDataParallel
averages the processes' parameter gradients: the average is then exactly the one-process gradient,
for the towers and heads (whose gradient is summed through the gathers) and for the temperature
(whose gradient is the sum of the shares') alike.
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


def clip_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor,
              hard: torch.Tensor | None = None, mask: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Symmetric InfoNCE for L2-normalised (B, D) image and text embeddings; pair i is (i, i).
    ``hard``: (H, D) embeddings of hard negatives (photos marked wrong for a caption's words),
    ``mask`` (B, H): which caption each one is a negative of. A caption's hard negatives join
    the other photos of the batch in its denominator, so training pushes it away from them."""
    logits = scale * image @ text.T
    target = torch.arange(len(image), device=image.device)
    per_text = with_hard(logits.T, scale, text, hard, mask)
    return (F.cross_entropy(logits, target) + F.cross_entropy(per_text, target)) / 2


def with_hard(per_text: torch.Tensor, scale: torch.Tensor, text: torch.Tensor,
              hard: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
    """A caption's logits over the batch's photos, then over its own hard negatives (the
    others' set to -inf, so they count for nothing)."""
    if hard is None or mask is None or not bool(mask.any()):
        return per_text
    extra = (scale * text @ hard.T).masked_fill(~mask, float("-inf"))
    return torch.cat([per_text, extra], dim=1)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather of unequal slices whose backward sums the gradients of every process's use of
    the result and returns this process's slice of the sum."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
        width = max(sizes)
        padded = x.new_zeros((width, *x.shape[1:]))
        padded[: len(x)] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        ctx.sizes, ctx.rank = sizes, rank
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # a sum: every process's share of the loss reaches every slice
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def gather_with_grad(x: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
    """Every process's slice (``sizes[r]`` rows on rank r) concatenated in rank order; the
    gradient flowing back into the result reaches the process each row came from."""
    if len(sizes) == 1:
        return x
    return _GatherWithGrad.apply(x, list(sizes), rank)


def sharded_clip_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor,
                      sizes: list[int], rank: int, hard: torch.Tensor | None = None,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """This process's share of clip_loss over the global batch; ``image`` and ``text`` are its
    slice (rows ``sum(sizes[:rank])`` on of the global batch, L2-normalised). The shares of all
    processes sum to clip_loss of the whole batch. ``hard``/``mask``: the hard negatives of this
    slice's captions (clip_loss), embedded here: their gradient stays in this process's share."""
    every_image = gather_with_grad(image, sizes, rank)
    every_text = gather_with_grad(text, sizes, rank)
    start = sum(sizes[:rank])
    target = torch.arange(start, start + len(image), device=image.device)
    per_image = F.cross_entropy(scale * image @ every_text.T, target, reduction="sum")
    per_text = F.cross_entropy(with_hard(scale * text @ every_image.T, scale, text, hard, mask),
                               target, reduction="sum")
    return (per_image + per_text) / (2 * sum(sizes))
