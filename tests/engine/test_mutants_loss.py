"""The gathered loss inside one process: each of two ranks, given the other's embeddings the
way torch.distributed would hand them over, gets the whole batch's loss and exactly its own
slice of the whole batch's gradient; outside a process group it is the plain loss.

tests/engine/test_loss.py checks the same with two real processes; this one runs where the
mutation tests can see it (tests/bench/mutation.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import engine.training.loss as loss


class TwoRanks:
    """Stands in for torch.distributed: rank ``rank`` of two; ``local`` maps the other rank to
    the embeddings it sends."""

    def __init__(self, rank: int, local: dict[int, torch.Tensor]) -> None:
        self.rank, self.local = rank, local

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def get_world_size(self) -> int:
        return 2

    def get_rank(self) -> int:
        return self.rank

    def all_gather(self, parts: list[torch.Tensor], x: torch.Tensor) -> None:
        assert not x.requires_grad  # what is sent carries no gradient
        for r, part in enumerate(parts):
            part.copy_(x if r == self.rank else self.local[r])


def _batch():
    g = torch.Generator().manual_seed(2)
    return torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)


@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_gets_the_whole_loss_and_its_slice_of_the_gradient(monkeypatch, rank):
    raw_img, raw_txt = _batch()
    img, txt = raw_img.clone().requires_grad_(True), raw_txt.clone().requires_grad_(True)
    whole = loss.clip_loss(F.normalize(img, dim=1), F.normalize(txt, dim=1), torch.tensor(5.0))
    whole.backward()

    part = slice(rank * 4, rank * 4 + 4)
    peer = 1 - rank
    other = slice(peer * 4, peer * 4 + 4)
    mine_img = raw_img[part].clone().requires_grad_(True)
    mine_txt = raw_txt[part].clone().requires_grad_(True)
    # the peer's normalised embeddings, in the order the two calls ask for them
    sent = iter([F.normalize(raw_img[other], dim=1), F.normalize(raw_txt[other], dim=1)])

    class Peer(TwoRanks):
        def all_gather(self, parts, x):
            self.local = {peer: next(sent)}
            super().all_gather(parts, x)

    monkeypatch.setattr(loss, "dist", Peer(rank, {}))
    got = loss.gathered_clip_loss(F.normalize(mine_img, dim=1), F.normalize(mine_txt, dim=1),
                                  torch.tensor(5.0))
    got.backward()
    assert float(got.detach()) == pytest.approx(float(whole.detach()), rel=1e-6)
    assert torch.allclose(mine_img.grad, img.grad[part], atol=1e-6)
    assert torch.allclose(mine_txt.grad, txt.grad[part], atol=1e-6)


def test_without_a_process_group_the_gathered_loss_is_the_plain_loss():
    raw_img, raw_txt = _batch()
    img, txt = F.normalize(raw_img, dim=1), F.normalize(raw_txt, dim=1)
    assert float(loss.gathered_clip_loss(img, txt, torch.tensor(5.0))) == pytest.approx(
        float(loss.clip_loss(img, txt, torch.tensor(5.0))), rel=1e-6)
    assert loss.gather_with_grad(img) is img
