"""Ray Train as a launcher of the same training torchrun runs: ``chikaku train --ray local:2``
registers the model in the library once, and its two workers on a private local Ray train the
model one process trains on the whole batch (with SGD, where a wrongly scaled gradient shows at
once); a cluster without room for the workers, an address training cannot use and a missing Ray
Train are refused at once with what to do instead."""

from __future__ import annotations

import importlib
import json
import signal
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("ray.train.torch", reason="Ray Train comes with chikaku[cluster]")

from engine import cli  # noqa: E402
from engine.cluster import ClusterError  # noqa: E402
from engine.cluster.train import check_room, train_on_ray  # noqa: E402
from engine.training.distributed import World, joined  # noqa: E402
from tests.engine.test_distributed import _model, _photos, _train  # noqa: E402

OPTIONS = dict(steps=4, batch_size=16, lr=3e-2, activate="never")
# as in test_distributed: 16 of 21 photos a step in slices of 8 and 8 (frozen towers, cached
# features), then all 21 in 11 and 10 with the whole towers training
JOBS = [{"kind": kind, "optimizer": "sgd",
         "options": dict(steps=6, batch_size=batch, lr=0.5, eval_every=6, ema=0.0, seed=3,
                         crops=0)} for kind, batch in (("heads", 16), ("towers", 64))]


def _rank_and_pairs(job: dict) -> dict | None:
    """Each worker's part: what `chikaku train --ray` has it run (``engine.cli.ray_rank``), then,
    in the same process group, test_distributed's fine-tunes of the tiny model, whose outcome the
    first worker writes beside the library."""
    from engine.cli import ray_rank

    out = ray_rank(job)
    world, device = joined()
    assert device == "cpu" and world.size == 2
    folder = Path(job["args"].library).parent / "pairs"
    pairs = [_train({**j, "folder": str(folder)}, world) for j in JOBS]
    if world.leader:
        (folder / "ray.json").write_text(json.dumps(
            [{"steps": o["steps"], "recall": o["recall"],
              "weights": {k: v.tolist() for k, v in o["weights"].items()}} for o in pairs]))
    return out


def _weights(folder: str) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "weights.safetensors"))


def test_two_ray_workers_train_as_one_process_and_register_the_model_once(
        shapes_lib, monkeypatch, capsys):
    lib, _, _ = shapes_lib
    pairs = Path(lib.root).parent / "pairs"
    pairs.mkdir()
    _photos(str(pairs), 21, 0, write=True)
    _photos(str(pairs), 8, 1, write=True)
    before = {m.version for m in lib.models()}
    # the command names its workers' function by module; the workers import this one by name
    monkeypatch.setattr(cli, "ray_rank",
                        importlib.import_module("tests.engine.test_ray_train")._rank_and_pairs)
    interrupt = signal.getsignal(signal.SIGINT)
    code = cli.main(["--library", str(lib.root), "--device", "cpu", "train", "--ray", "local:2",
                     "--json", *[x for k, v in OPTIONS.items()
                                 for x in (f"--{k.replace('_', '-')}", str(v))]])
    said = capsys.readouterr()
    assert code == 0, said.err[-3000:]
    # Ray Train's own Ctrl+C handler for the run is gone with it: a later Ctrl+C is the program's
    assert signal.getsignal(signal.SIGINT) is interrupt
    result = json.loads(said.out[said.out.index("{"):])
    added = {m.version for m in lib.models()} - before
    assert added == {result["version"]}  # one version, registered once, by the first worker
    assert result["steps"] == 4 and result["photos"] > 0 and not result["activated"]
    trained, start = _weights(result["checkpoint"]), lib.model.state_dict()
    assert max(float((v - start[k]).abs().max()) for k, v in trained.items()) > 1e-3

    # the weights two Ray Train workers trained are those one process trains on whole batches
    got = json.loads((pairs / "ray.json").read_text())
    for job, shared in zip(JOBS, got, strict=True):
        alone = _train({**job, "folder": str(pairs)}, World())
        assert shared["steps"] == alone["steps"] == 6
        moved = max(float((alone["weights"][k] - v).abs().max())
                    for k, v in _model(job["kind"]).trained_state().items())
        assert moved > 1e-2, "training must move the weights for the comparison to mean much"
        for k, v in alone["weights"].items():
            ray_trained = torch.tensor(shared["weights"][k], dtype=v.dtype)
            assert torch.allclose(ray_trained, v, atol=1e-5, rtol=0), (job["kind"], k)
        assert shared["recall"] == alone["recall"]


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
    assert "6 CPUs and 1 GPU on 2 machines: room for 1: ask for fewer (--workers 1)" in said
    with pytest.raises(ClusterError, match="7 training workers.*room for 6"):
        check_room(nodes, 7, gpu=False)
    with pytest.raises(ClusterError, match="1 CPU and 0 GPUs on 1 machine: room for 0: train "
                       r"on the CPUs \(leave out --gpu\), or give the private Ray more CPUs"):
        check_room([{"Alive": True, "Resources": {"CPU": 1.0}}], 2, gpu=True, local=True)


def test_addresses_training_cannot_use_are_refused_with_the_ones_it_can(monkeypatch, tmp_path):
    with pytest.raises(ClusterError, match="ray job submit .* --ray auto"):
        train_on_ray(_rank_and_pairs, [], "http://head:8265", tmp_path)
    with pytest.raises(ClusterError, match="local:N takes a number of CPUs"):
        train_on_ray(_rank_and_pairs, [], "local:0", tmp_path)
    with pytest.raises(ClusterError, match="needs --workers N"):
        train_on_ray(_rank_and_pairs, [], "head:6379", tmp_path)
    monkeypatch.setitem(sys.modules, "ray.train.torch", None)  # as if Ray Train were missing
    with pytest.raises(ClusterError, match=r"pip install 'chikaku\[cluster\]'"):
        train_on_ray(_rank_and_pairs, [], "local:2", tmp_path)

