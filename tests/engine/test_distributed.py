"""Fine-tuning in two processes (gloo, on the CPU) gives the model one process gives on the whole
batch, with plain SGD (where a wrongly scaled gradient shows at once) and with AdamW; a cancel
or an early stop on the leader ends both processes instead of leaving one waiting; and a
cancelled run resumes, in both processes, where it stopped."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from torch import nn

from engine.config import TrainOptions
from engine.errors import Cancelled
from engine.models import create_model
from engine.training.data import CaptionedPhotos
from engine.training.distributed import World, current
from engine.training.features import FeatureCache
from engine.training.loop import Trainer, follow, run
from tests.conftest import TINY_MODEL

WORDS = ("red", "green", "blue", "round", "square", "small", "large", "dog", "tree", "boat")
TIMEOUT = 240  # seconds both processes get before the test counts them as hung


def _photos(folder: str, n: int, seed: int, write: bool = False) -> CaptionedPhotos:
    """n random photos with random captions (written once, by the test's own process)."""
    rng = np.random.default_rng(seed)
    data = CaptionedPhotos([], [], [], [])
    for i in range(n):
        path = os.path.join(folder, f"{seed}-{i}.png")
        pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        if write:
            Image.fromarray(pixels).save(path)
        data.ids.append(i)
        data.paths.append(path)
        data.hashes.append(f"{seed}-{i}")
        data.captions.append([" ".join(rng.choice(WORDS, 3)) for _ in range(2)])
    return data


def _model(kind: str):
    model = create_model(TINY_MODEL, device="cpu")
    if kind == "heads":  # frozen towers: cached features, a step trains only the heads
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(("image_proj", "text_proj")))
    else:  # whole towers train on every step (without batch norm, which sees only a slice)
        for i, layer in enumerate(model.image_tower):
            if isinstance(layer, nn.BatchNorm2d):
                model.image_tower[i] = nn.Identity()
    return model


def _train(job: dict, world: World, cancel_at: int | None = None) -> dict:
    """One fine-tune of the tiny model; the leader's weights and recall, or a follower's steps."""
    opt = TrainOptions(**job["options"])
    train, held = _photos(job["folder"], 21, 0), _photos(job["folder"], 8, 1)
    run_dir = Path(job["run_dir"]) if job.get("run_dir") and world.leader else None
    trainer = Trainer(_model(job["kind"]), train, held, opt, FeatureCache(None), run_dir,
                      world=world)
    if job["optimizer"] == "sgd":
        trainer.optimizer = torch.optim.SGD(
            [{"params": g["params"], "share": g["share"]} for g in trainer.optimizer.param_groups],
            lr=opt.lr)
    steps, step, cancel, messages = [], trainer.step, threading.Event(), []
    trainer.step = lambda prep, n: (steps.append(n), step(prep, n))[1]

    def emit(ev) -> None:
        if ev.message:
            messages.append(ev.message)
        if cancel_at is not None and ev.kind == "step" and ev.done == cancel_at:
            cancel.set()

    try:
        if not world.leader:
            follow(trainer, cancel)
            return {"steps": len(steps)}
        outcome = run(trainer, emit, cancel)
    except Cancelled:
        return {"steps": len(steps), "cancelled": True}
    return {"steps": len(steps), "messages": messages, "recall": dict(outcome.after),
            "weights": {k: v.clone() for k, v in trainer.model.trained_state().items()}}


def _worker(rank: int, port: int, jobs: list, cancel_at: int | None, out) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        for n, job in enumerate(jobs):
            out[(n, rank)] = _train(job, current(), cancel_at)
    finally:
        dist.destroy_process_group()


def _two_processes(jobs: list, cancel_at: int | None = None) -> dict:
    for folder in {job["folder"] for job in jobs}:
        _photos(folder, 21, 0, write=True)
        _photos(folder, 8, 1, write=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    manager = mp.Manager()
    out = manager.dict()
    context = mp.start_processes(_worker, args=(port, jobs, cancel_at, out), nprocs=2,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for p in context.processes:
                p.kill()
            pytest.fail(f"the two processes were still running after {TIMEOUT} s")
    return dict(out)


OPTIONS = dict(steps=6, batch_size=16, lr=0.5, eval_every=6, ema=0.0, seed=3, crops=0)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_two_processes_train_the_model_one_process_trains(tmp_path, optimizer):
    # 16 of 21 photos a step: slices of 8 and 8; then all 21 (11 and 10), flipped views
    jobs = [{"folder": str(tmp_path), "kind": kind, "optimizer": optimizer,
             "options": {**OPTIONS, "batch_size": batch, "lr": OPTIONS["lr"]
                         if optimizer == "sgd" else 3e-2}}
            for kind, batch in (("heads", 16), ("towers", 64))]
    got = _two_processes(jobs)
    for n, job in enumerate(jobs):
        alone = _train(job, World())
        shared = got[(n, 0)]
        assert got[(n, 1)]["steps"] == shared["steps"] == alone["steps"] == 6
        moved = max(float((alone["weights"][k] - v).abs().max())
                    for k, v in _model(job["kind"]).trained_state().items())
        assert moved > 1e-2, "training must move the weights for the comparison to mean much"
        for k, v in alone["weights"].items():
            assert torch.allclose(shared["weights"][k], v, atol=1e-5, rtol=0), (job["kind"], k)
        assert shared["recall"] == alone["recall"]


def test_a_cancel_on_the_leader_ends_both_processes(tmp_path):
    job = {"folder": str(tmp_path), "kind": "heads", "optimizer": "adamw",
           "options": {**OPTIONS, "steps": 500, "lr": 1e-3}}
    got = _two_processes([job], cancel_at=3)
    assert got[(0, 0)] == {"steps": 3, "cancelled": True}
    assert got[(0, 1)] == {"steps": 3, "cancelled": True}


def test_an_early_stop_on_the_leader_ends_both_processes(tmp_path):
    # so small a rate that recall cannot change: the second evaluation is no better, and with
    # patience 1 the leader stops there, after 4 of 500 steps
    job = {"folder": str(tmp_path), "kind": "heads", "optimizer": "adamw",
           "options": {**OPTIONS, "steps": 500, "lr": 1e-12, "eval_every": 2, "patience": 1}}
    got = _two_processes([job])
    assert got[(0, 0)]["steps"] == got[(0, 1)]["steps"] == 4
    assert any("stopped early at step 4" in m for m in got[(0, 0)]["messages"])



def test_a_cancelled_shared_run_resumes_to_the_model_of_an_uninterrupted_run(tmp_path):
    job = {"folder": str(tmp_path), "kind": "heads", "optimizer": "adamw",
           "run_dir": str(tmp_path / "run"), "options": {**OPTIONS, "steps": 8, "lr": 3e-2}}
    first = _two_processes([job], cancel_at=3)
    assert first[(0, 0)]["cancelled"] and first[(0, 1)]["cancelled"]
    resumed = _two_processes([job])  # the leader reads the saved state and hands it on
    assert resumed[(0, 0)]["steps"] == resumed[(0, 1)]["steps"] == 5
    assert any("resuming at step 3" in m for m in resumed[(0, 0)]["messages"])
    alone = _train({**job, "run_dir": None}, World())
    for k, v in alone["weights"].items():
        assert torch.allclose(resumed[(0, 0)]["weights"][k], v, atol=1e-5, rtol=0), k
