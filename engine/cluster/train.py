"""Fine-tuning under Ray Train: ``chikaku train --ray ADDRESS|local:N [--workers N] [--gpu]``.

A thin launcher around the training torchrun runs. Ray Train starts one worker per process
(a CPU each, and a GPU each with ``--gpu``), sets up their torch.distributed process group (gloo
on CPUs, NCCL on GPUs) and has each call the same per-process function ``chikaku train
--distributed`` calls under torchrun: the first worker trains, judges and registers the model,
the others train on their slices of every batch. What the first worker returns comes back to the
command through a small Ray Train checkpoint (a JSON file) in the run's folder.

Every worker opens the library itself, so its catalog and its folder must be reachable from
every node: on this machine (``local:N``) they are; on a cluster of several machines the library
is on storage every node mounts at the same path, with a shared PostgreSQL catalog
(``CHIKAKU_DATABASE_URL``, passed on to the workers with every other ``CHIKAKU_`` variable).
``local:N`` starts a private Ray of N CPUs on this machine for the command (as ``chikaku index
--cluster local:N`` does) and stops it afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ClusterError
from .submit import LocalRay, local_cpus

INSTALL_HINT = ("training on Ray needs Ray Train: install chikaku[cluster] "
                "(pip install 'chikaku[cluster]')")
OUTCOME = "outcome.json"  # in the first worker's checkpoint: what its part returned
# As long as torchrun's processes wait for one another (distributed.TIMEOUT): the others wait at
# the first collective while the first worker reads every photo once.
PROCESS_GROUP_TIMEOUT_S = 12 * 3600

Rank = Callable[[Any], dict | None]  # one worker's part: the first returns its outcome


@dataclass(frozen=True)
class RayTarget:
    local_cpus: int | None  # local:N
    address: str | None  # what ray.init connects to: auto, HEAD:6379 or ray://HEAD:10001


def parse_ray_target(text: str) -> RayTarget:
    text = text.strip()
    n = local_cpus(text, "--ray")
    if n is not None:
        return RayTarget(n, None)
    if text.startswith(("http://", "https://")):
        raise ClusterError(
            f"--ray {text}: that is a Jobs API address; training connects to the cluster itself: "
            "run `chikaku train --ray auto` on one of its nodes (for example through `ray job "
            "submit --address http://HEAD:8265 -- chikaku --library DIR train --ray auto`), or "
            "give HEAD:6379 or ray://HEAD:10001")
    if not text:
        raise ClusterError("--ray needs an address: auto, HEAD:6379, ray://HEAD:10001 or local:N")
    return RayTarget(None, text)


def require_train():
    """The ``ray`` module with Ray Train importable, or a ClusterError naming the extra."""
    try:
        import ray
        import ray.train.torch  # noqa: F401
    except ImportError as e:
        raise ClusterError(INSTALL_HINT) from e
    return ray


def train_on_ray(rank: Rank, job: Any, target: str, work_dir: Path, workers: int | None = None,
                 gpu: bool = False) -> dict:
    """Run ``rank(job)`` in Ray Train workers training together, and return what the first
    worker's call returned. ``rank`` must be importable by name on the workers (a function of a
    module, not of ``__main__``). ``work_dir`` holds the run's files (the private Ray's, Ray
    Train's run folder) and must be on storage every node sees."""
    where = parse_ray_target(target)
    require_train()
    n = workers if workers is not None else where.local_cpus
    if n is None:
        raise ClusterError("--ray with a cluster's address needs --workers N, the number of "
                           "processes to train in")
    if n < 1:
        raise ClusterError(f"--workers {n}: train in at least 1 worker")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if where.local_cpus is None:
        return _fit(where.address, rank, job, n, gpu, work_dir)
    local = LocalRay(work_dir, where.local_cpus, _local_gpus() if gpu else 0)
    with local:  # training connects to the head itself, not through its Jobs API
        return _fit(local.gcs, rank, job, n, gpu, work_dir, local=True)


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def _fit(address: str, rank: Rank, job: Any, workers: int, gpu: bool, work_dir: Path,
         local: bool = False) -> dict:
    import ray
    from ray.train import LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    # the library's settings (its PostgreSQL catalog) reach every worker; the first worker's
    # progress lines are shown as printed, once (not also through Ray Train's logger)
    env = {k: v for k, v in os.environ.items() if k.startswith("CHIKAKU_")}
    env["RAY_TRAIN_ENABLE_PRINT_PATCH"] = "0"
    try:
        ray.init(address=address, runtime_env={"env_vars": env}, logging_level="WARNING",
                 log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {e}") from e
    name = f"chikaku-train-{uuid.uuid4().hex[:8]}"
    runs = work_dir / "runs"
    try:
        check_room(ray.nodes(), workers, gpu, local)
        trainer = TorchTrainer(
            _worker, train_loop_config={"rank": rank, "job": job},
            torch_config=TorchConfig(timeout_s=PROCESS_GROUP_TIMEOUT_S),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpu,
                                         resources_per_worker={"CPU": 1, "GPU": 1} if gpu
                                         else {"CPU": 1}),
            run_config=RunConfig(name=name, storage_path=str(runs),
                                 logging_config=LoggingConfig(log_level="WARNING")))
        # Ray Train sets its own Ctrl+C handler for the run and leaves it behind, where a later
        # Ctrl+C would try to stop a run long gone (in a program that goes on after training)
        interrupt = (signal.getsignal(signal.SIGINT)
                     if threading.current_thread() is threading.main_thread() else None)
        try:
            result = trainer.fit()
        except Exception as e:  # Ray Train's TrainingFailedError and what it wraps
            raise ClusterError(failure_message(e)) from None
        finally:
            if interrupt is not None:
                signal.signal(signal.SIGINT, interrupt)
        if result.checkpoint is None:
            raise ClusterError("training on Ray ended without the first worker's result")
        with result.checkpoint.as_directory() as folder:
            return json.loads((Path(folder) / OUTCOME).read_text())
    finally:
        ray.shutdown()
        shutil.rmtree(runs / name, ignore_errors=True)


def check_room(nodes: list[dict], workers: int, gpu: bool, local: bool = False) -> None:
    """Refuse at once, saying what was asked and what the cluster has, when it has no room for
    the workers (a CPU each, and a GPU each with ``gpu``, on one machine): Ray would otherwise
    keep waiting for them."""
    alive = [n for n in nodes if n.get("Alive", n.get("alive", False))]
    cpus = gpus = room = 0
    for node in alive:
        have = node.get("Resources", {})
        c, g = int(have.get("CPU", 0)), int(have.get("GPU", 0))
        cpus, gpus = cpus + c, gpus + g
        room += min(c, g) if gpu else c
    if room >= workers:
        return
    ways = ([f"ask for fewer (--workers {room})"] if room else []) + (
        ["train on the CPUs (leave out --gpu)"] if gpu and not gpus and cpus else []) + (
        ["give the private Ray more CPUs (local:N)"] if local else [])
    raise ClusterError(
        f"{workers} training workers were asked for, each needing "
        f"{'a CPU and a GPU' if gpu else 'a CPU'} on one machine, but the Ray cluster has "
        f"{_count(cpus, 'CPU')} and {_count(gpus, 'GPU')} on {_count(len(alive), 'machine')}: "
        f"room for {room}" + (": " + ", or ".join(ways) if ways else ""))


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def failure_message(error: BaseException) -> str:
    """What went wrong in the workers, said as the worker said it (an EngineError's message
    stays the message)."""
    from ..errors import EngineError

    failures = getattr(error, "worker_failures", None) or {}
    causes = []
    for worker, failure in sorted(failures.items()):
        cause = getattr(failure, "cause", None) or failure
        if isinstance(cause, EngineError):
            causes.append(str(cause))
        else:
            lines = [line for line in str(cause).strip().splitlines() if line.strip()]
            causes.append(f"worker {worker}: {type(cause).__name__}: "
                          + (lines[-1] if lines else ""))
    if not causes:
        causes = [f"{type(error).__name__}: {error}"]
    seen = list(dict.fromkeys(causes))
    return "training on Ray failed: " + "; ".join(seen)


def _worker(config: dict) -> None:
    """One Ray Train worker: its part of the training, then a report (every worker reports once,
    the first with its outcome as a checkpoint)."""
    import ray.train

    outcome = config["rank"](config["job"])
    with tempfile.TemporaryDirectory(prefix="chikaku-outcome-") as folder:
        checkpoint = None
        if outcome is not None:
            (Path(folder) / OUTCOME).write_text(json.dumps(outcome))
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report({"done": 1}, checkpoint=checkpoint)
