"""CLIP's symmetric InfoNCE: against a direct computation, and across two processes."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from engine.training.loss import MAX_LOGIT_SCALE, LogitScale, clip_loss, gathered_clip_loss


def _direct(img, txt, scale):
    """The loss written out term by term."""
    n = len(img)
    total = 0.0
    for i in range(n):
        row = [scale * float(img[i] @ txt[j]) for j in range(n)]
        col = [scale * float(img[j] @ txt[i]) for j in range(n)]
        total += -row[i] + math.log(sum(math.exp(v) for v in row))
        total += -col[i] + math.log(sum(math.exp(v) for v in col))
    return total / (2 * n)


def test_loss_equals_direct_computation():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(5, 8, generator=g), dim=1)
    txt = F.normalize(torch.randn(5, 8, generator=g), dim=1)
    assert float(clip_loss(img, txt, torch.tensor(3.0))) == pytest.approx(
        _direct(img, txt, 3.0), rel=1e-5)
    # matching pairs lower the loss
    assert float(clip_loss(img, img, torch.tensor(10.0))) < float(
        clip_loss(img, txt, torch.tensor(10.0)))


def test_logit_scale_starts_at_one_over_007_and_is_clamped_at_100():
    s = LogitScale()
    assert float(s().detach()) == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        s.t.fill_(10.0)
    assert float(s().detach()) == pytest.approx(100.0, rel=1e-5)
    s.clamp_()
    assert float(s.t.detach()) == pytest.approx(MAX_LOGIT_SCALE)


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        raw_img, raw_txt = _batch()
        part = slice(rank * 4, rank * 4 + 4)
        img = raw_img[part].clone().requires_grad_(True)
        txt = raw_txt[part].clone().requires_grad_(True)
        loss = gathered_clip_loss(F.normalize(img, dim=1), F.normalize(txt, dim=1),
                                  torch.tensor(5.0))
        loss.backward()
        out[rank] = (float(loss.detach()), img.grad.clone(), txt.grad.clone())
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one_process_with_the_whole_batch():
    raw_img, raw_txt = _batch()
    img, txt = raw_img.clone().requires_grad_(True), raw_txt.clone().requires_grad_(True)
    whole = clip_loss(F.normalize(img, dim=1), F.normalize(txt, dim=1), torch.tensor(5.0))
    whole.backward()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(2, port, out), nprocs=2, join=True)
    for rank in range(2):
        loss, gi, gt = out[rank]
        assert loss == pytest.approx(float(whole.detach()), rel=1e-6)
        part = slice(rank * 4, rank * 4 + 4)
        # Each process's gradient is its slice of the single-process gradient, so summing
        # parameter gradients across processes reproduces the whole-batch gradient.
        assert torch.allclose(gi, img.grad[part], atol=1e-6)
        assert torch.allclose(gt, txt.grad[part], atol=1e-6)
