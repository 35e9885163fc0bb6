"""The shared loss inside one process: two threads stand in for two processes, exchanging
embeddings and gradients the way torch.distributed would. Their shares sum to the whole batch's
loss, and each gets exactly its slice of the whole batch's gradient; in one process the gather
hands back what it was given.

tests/engine/test_loss.py checks the same with two real processes; this one runs where the
mutation tests can see it (tests/bench/mutation.py)."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

import engine.training.loss as loss


class TwoThreads:
    """Stands in for torch.distributed between two threads: thread r is rank r."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2)
        self.sent: dict[int, torch.Tensor] = {}
        self.rank = threading.local()

    def _exchange(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.sent[self.rank.value] = x.clone()
        self.barrier.wait()
        got = [self.sent[0], self.sent[1]]
        self.barrier.wait()  # both have read before either sends again
        return got

    def all_gather(self, parts: list[torch.Tensor], x: torch.Tensor) -> None:
        assert all(p.shape == x.shape for p in parts)  # equal sizes, as gloo and NCCL want
        for part, got in zip(parts, self._exchange(x), strict=True):
            part.copy_(got)

    def all_reduce(self, x: torch.Tensor) -> None:
        a, b = self._exchange(x)
        x.copy_(a + b)


SIZES = [5, 3]


def _batch():
    g = torch.Generator().manual_seed(2)
    return torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)


def test_two_ranks_share_the_loss_and_get_their_slice_of_the_gradient(monkeypatch):
    raw_img, raw_txt = _batch()
    img, txt = raw_img.clone().requires_grad_(True), raw_txt.clone().requires_grad_(True)
    t = torch.tensor(1.5, requires_grad=True)
    whole = loss.clip_loss(F.normalize(img, dim=1), F.normalize(txt, dim=1), t.exp())
    whole.backward()

    fake = TwoThreads()
    monkeypatch.setattr(loss, "dist", fake)
    got, failed = {}, []

    def rank(r: int) -> None:
        try:
            fake.rank.value = r
            part = slice(sum(SIZES[:r]), sum(SIZES[: r + 1]))
            mine_img = raw_img[part].clone().requires_grad_(True)
            mine_txt = raw_txt[part].clone().requires_grad_(True)
            mine_t = torch.tensor(1.5, requires_grad=True)
            share = loss.sharded_clip_loss(F.normalize(mine_img, dim=1),
                                           F.normalize(mine_txt, dim=1), mine_t.exp(), SIZES, r)
            share.backward()
            got[r] = (float(share.detach()), mine_img.grad, mine_txt.grad, float(mine_t.grad))
        except BaseException as e:  # reported below, in the test's thread
            failed.append(e)
            fake.barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not failed, failed
    assert got[0][0] + got[1][0] == pytest.approx(float(whole.detach()), rel=1e-6)
    assert got[0][3] + got[1][3] == pytest.approx(float(t.grad), rel=1e-5)
    for r in range(2):
        part = slice(sum(SIZES[:r]), sum(SIZES[: r + 1]))
        assert torch.allclose(got[r][1], img.grad[part], atol=1e-6)
        assert torch.allclose(got[r][2], txt.grad[part], atol=1e-6)


def test_in_one_process_the_shared_loss_is_the_plain_loss():
    raw_img, raw_txt = _batch()
    img, txt = F.normalize(raw_img, dim=1), F.normalize(raw_txt, dim=1)
    assert float(loss.sharded_clip_loss(img, txt, torch.tensor(5.0), [8], 0)) == pytest.approx(
        float(loss.clip_loss(img, txt, torch.tensor(5.0))), rel=1e-6)
    assert loss.gather_with_grad(img, [8], 0) is img
