"""CLIP's symmetric InfoNCE: against a direct computation, and shared by two processes."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from engine.training.loss import MAX_LOGIT_SCALE, LogitScale, clip_loss, sharded_clip_loss


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


SIZES = [5, 3]  # unequal slices: a batch of 8 that two processes share


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        raw_img, raw_txt = _batch()
        part = slice(sum(SIZES[:rank]), sum(SIZES[: rank + 1]))
        img = raw_img[part].clone().requires_grad_(True)
        txt = raw_txt[part].clone().requires_grad_(True)
        t = torch.tensor(1.6, requires_grad=True)
        share = sharded_clip_loss(F.normalize(img, dim=1), F.normalize(txt, dim=1), t.exp(),
                                  SIZES, rank)
        share.backward()
        out[rank] = (float(share.detach()), img.grad.clone(), txt.grad.clone(),
                     float(t.grad))
    finally:
        dist.destroy_process_group()


def test_two_processes_share_the_loss_and_gradient_of_one_process_with_the_whole_batch():
    raw_img, raw_txt = _batch()
    img, txt = raw_img.clone().requires_grad_(True), raw_txt.clone().requires_grad_(True)
    t = torch.tensor(1.6, requires_grad=True)
    whole = clip_loss(F.normalize(img, dim=1), F.normalize(txt, dim=1), t.exp())
    whole.backward()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(2, port, out), nprocs=2, join=True)
    # The shares (and the temperature's gradients) sum to the whole batch's; each process's
    # embeddings get exactly their slice of the whole batch's gradient, the part every share
    # sends back through the gathers.
    assert out[0][0] + out[1][0] == pytest.approx(float(whole.detach()), rel=1e-6)
    assert out[0][3] + out[1][3] == pytest.approx(float(t.grad), rel=1e-5)
    for rank in range(2):
        _, gi, gt, _ = out[rank]
        part = slice(sum(SIZES[:rank]), sum(SIZES[: rank + 1]))
        assert torch.allclose(gi, img.grad[part], atol=1e-6)
        assert torch.allclose(gt, txt.grad[part], atol=1e-6)


def test_hard_negatives_join_only_their_own_captions_denominator():
    g = torch.Generator().manual_seed(1)
    img = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    txt = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    hard = F.normalize(torch.randn(3, 8, generator=g), dim=1)
    scale = torch.tensor(10.0)
    plain = clip_loss(img, txt, scale)
    none = torch.zeros(6, 3, dtype=torch.bool)
    assert torch.allclose(clip_loss(img, txt, scale, hard, none), plain)  # no caption has one
    mask = none.clone()
    mask[2, 1] = True  # the third caption's hard negative
    with_one = clip_loss(img, txt, scale, hard, mask)
    # written out: caption 2's text->image term gains exp(s * t2 . h1) in its denominator
    row = scale * txt[2] @ img.T
    before = -row[2] + torch.logsumexp(row, 0)
    after = -row[2] + torch.logsumexp(torch.cat([row, (scale * txt[2] @ hard[1])[None]]), 0)
    assert float(with_one - plain) == pytest.approx(float(after - before) / (2 * 6), abs=1e-6)


def test_training_with_a_hard_negative_pushes_the_caption_away_from_it():
    g = torch.Generator().manual_seed(2)
    img = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    txt = torch.nn.Parameter(F.normalize(torch.randn(4, 8, generator=g), dim=1))
    hard = F.normalize(txt.detach()[0] + 0.1 * torch.randn(8, generator=g), dim=0)[None]
    mask = torch.zeros(4, 1, dtype=torch.bool)
    mask[0, 0] = True
    opt = torch.optim.SGD([txt], lr=0.5)
    start = float(txt[0] @ hard[0])
    for _ in range(20):
        opt.zero_grad()
        clip_loss(img, F.normalize(txt, dim=1), torch.tensor(10.0), hard, mask).backward()
        opt.step()
    end = float(F.normalize(txt, dim=1)[0] @ hard[0])
    assert end < start - 0.2
