"""Fine-tuning across several processes (``torchrun``, or Ray Train's workers): one process per
GPU (NCCL) or several on CPUs (gloo), together training one model as one process would on the
whole batch. ``start`` joins torchrun's processes; under another launcher that has already set up
the process group, ``joined`` says where this process stands, and the training that follows is
the same.

Every process draws the same global batch from (seed, step) and embeds its own contiguous slice;
the loss gathers the slices (``loss.sharded_clip_loss``) and DistributedDataParallel averages the
gradients. Rank 0, the leader, alone evaluates, keeps checkpoints and registers the model; what
it decides (stop early) and a cancel on any process are shared every step, so no process is left
waiting on one that has gone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from ..errors import EngineError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# How long a collective waits for the others before failing the run. The others wait at the first
# one while the leader reads every photo once (hours for a large library on CPUs); a process that
# fails is not waited for, torchrun ends the rest.
TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class World:
    """This process's place among the processes training together (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")  # where the flags of collectives live

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @property
    def shared(self) -> bool:
        return self.size > 1

    def sizes(self, n: int) -> list[int]:
        """How many of a batch of n each process embeds, in rank order (differing by at most 1)."""
        return [len(p) for p in np.array_split(np.arange(n), self.size)]

    def part(self, n: int) -> slice:
        """This process's contiguous slice of a batch of n."""
        sizes = self.sizes(n)
        start = sum(sizes[: self.rank])
        return slice(start, start + sizes[self.rank])

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on any (a cancel asked of one ends all)."""
        if not self.shared:
            return flag
        t = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def leaders(self, flag: bool) -> bool:
        """The leader's flag, on every process (whether to stop early)."""
        if not self.shared:
            return flag
        t = torch.tensor([1 if flag else 0], device=self.device)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def total(self, value: float) -> float:
        """The sum of every process's value."""
        if not self.shared:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item())

    def from_leader(self, obj):
        """The leader's object (picklable), on every process."""
        if not self.shared:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def wait(self) -> None:
        if self.shared:
            dist.barrier()


def current() -> World:
    """The world of the initialised process group, or a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    device = (torch.device("cuda", torch.cuda.current_device())
              if dist.get_backend() == "nccl" else torch.device("cpu"))
    return World(dist.get_rank(), dist.get_world_size(), device)


def start(device: str = "auto") -> tuple[World, str]:
    """Join the processes torchrun started: NCCL when training on GPUs (process i on the
    machine's GPU i), gloo on CPUs. Returns the world and the device this process trains on."""
    missing = [v for v in TORCHRUN_VARIABLES if v not in os.environ]
    if missing:
        raise EngineError(
            "--distributed trains in several processes started by torchrun (it sets "
            + ", ".join(missing) + "), for example: torchrun --nproc-per-node 2 -m engine.cli "
            "train --distributed; without it, leave --distributed out")
    if not dist.is_available():
        raise EngineError("this build of PyTorch cannot train in several processes "
                          "(torch.distributed is not available)")
    local = int(os.environ["LOCAL_RANK"])
    gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if gpu:
        if not torch.cuda.is_available():
            raise EngineError("device 'cuda' was asked for, but no CUDA GPU is available")
        if local >= torch.cuda.device_count():
            raise EngineError(f"process {local} on this machine has no GPU of its own (the "
                              f"machine has {torch.cuda.device_count()}): start at most that "
                              "many processes per machine (torchrun --nproc-per-node)")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo", timeout=TIMEOUT)
    return joined()


def joined() -> tuple[World, str]:
    """This process's world and the device it trains on, once its process group exists (NCCL:
    the GPU its launcher set as current; gloo: the CPU)."""
    world = current()
    return world, (f"cuda:{torch.cuda.current_device()}" if world.device.type == "cuda"
                   else "cpu")


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
