"""Ray Train as a launcher of the same training torchrun runs: two workers on a private local Ray
(``local:2``) train the model one process trains on the whole batch (with SGD, where a wrongly
scaled gradient shows at once), ``chikaku train --ray local:2`` registers the model in the library
once, and a cluster without room for the workers is refused at once with what was asked and what
it has."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("ray.train.torch", reason="Ray Train comes with chikaku[cluster]")

from engine.cluster import ClusterError  # noqa: E402
from engine.cluster.train import check_room, train_on_ray  # noqa: E402
from engine.training.distributed import World, joined  # noqa: E402
from tests.engine.test_distributed import _model, _photos, _train  # noqa: E402

TIMEOUT = 240  # seconds before the run counts as hung
ROOT = Path(__file__).resolve().parents[2]
OPTIONS = dict(steps=4, batch_size=16, lr=3e-2, activate="never")
# as in test_distributed: 16 of 21 photos a step in slices of 8 and 8 (frozen towers, cached
# features), then all 21 in 11 and 10 with the whole towers training
JOBS = [{"kind": kind, "optimizer": "sgd",
         "options": dict(steps=6, batch_size=batch, lr=0.5, eval_every=6, ema=0.0, seed=3,
                         crops=0)} for kind, batch in (("heads", 16), ("towers", 64))]


def _rank(jobs: list[dict]) -> list[dict] | None:
    """A Ray Train worker's part: the fine-tunes of test_distributed, in Ray's process group."""
    world, device = joined()
    assert device == "cpu" and world.size == 2
    out = [_train(job, world) for job in jobs]
    if not world.leader:
        return None
    return [{"steps": o["steps"], "recall": o["recall"],
             "weights": {k: v.tolist() for k, v in o["weights"].items()}} for o in out]


def test_two_ray_workers_train_the_model_one_process_trains(tmp_path):
    _photos(str(tmp_path), 21, 0, write=True)
    _photos(str(tmp_path), 8, 1, write=True)
    jobs = [{**job, "folder": str(tmp_path)} for job in JOBS]
    # by a module name the workers import (they start in this folder), not pytest's own
    rank = importlib.import_module("tests.engine.test_ray_train")._rank
    got = train_on_ray(rank, jobs, "local:2", tmp_path / "work", workers=2)
    for job, shared in zip(jobs, got, strict=True):
        alone = _train(job, World())
        assert shared["steps"] == alone["steps"] == 6
        moved = max(float((alone["weights"][k] - v).abs().max())
                    for k, v in _model(job["kind"]).trained_state().items())
        assert moved > 1e-2, "training must move the weights for the comparison to mean much"
        for k, v in alone["weights"].items():
            ray_trained = torch.tensor(shared["weights"][k], dtype=v.dtype)
            assert torch.allclose(ray_trained, v, atol=1e-5, rtol=0), (job["kind"], k)
        assert shared["recall"] == alone["recall"]


def _weights(folder: str) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "weights.safetensors"))


def test_chikaku_train_on_a_local_ray_registers_the_model_once(shapes_lib):
    lib, _, _ = shapes_lib
    before = {m.version for m in lib.models()}
    run = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--library", str(lib.root), "--device", "cpu",
         "train", "--ray", "local:2", "--json",
         *[x for k, v in OPTIONS.items() for x in (f"--{k.replace('_', '-')}", str(v))]],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)  # standard output holds the result alone
    added = {m.version for m in lib.models()} - before
    assert added == {result["version"]}  # one version, registered once, by the first worker
    assert result["steps"] == 4 and result["photos"] > 0 and not result["activated"]
    trained, start = _weights(result["checkpoint"]), lib.model.state_dict()
    assert max(float((v - start[k]).abs().max()) for k, v in trained.items()) > 1e-3
    assert "step 4/4" in run.stderr  # the first worker's progress, shown by Ray


def test_a_cluster_without_room_for_the_workers_is_refused_with_what_it_has():
    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}},
             {"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]
    check_room(nodes, 6, gpu=False)
    check_room(nodes, 1, gpu=True)
    with pytest.raises(ClusterError) as e:
        check_room(nodes, 2, gpu=True)
    said = str(e.value)
    assert "2 training workers" in said and "a CPU and a GPU" in said
    assert "6 CPUs and 1 GPUs on 2 machines" in said and "--workers 1" in said
    with pytest.raises(ClusterError, match="7 training workers.*room for 6"):
        check_room(nodes, 7, gpu=False)
