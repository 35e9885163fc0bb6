"""The Ray job: decode and embed a job folder's pending photos into Parquet shards (or, for a
features job, run the frozen towers on its photos' views and its captions).

Run on the cluster by the Jobs API as ``python -m engine.cluster.job JOB_DIR``. Photos are read
and decoded by CPU tasks with the engine's own decoder (a bad file becomes a row with its
reason, as the local indexer records it), then embedded by a pool of actors that each load the
model once (on a GPU when the nodes have one) and write each batch as one shard. Rows some
finished shard already holds are not embedded again, so a killed job reruns from where it was.

Resources are sized from the nodes' shapes, so that every request fits a node; a job in which
no photo finishes for ``plan.stall_s`` seconds ends with a message instead of waiting forever.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray

from ..errors import BadImage
from ..imageio import content_hash, decode, read_file
from .jobdir import (
    MODEL,
    TEXT_SHARDS,
    TEXTS,
    Plan,
    finished_rows,
    pyarrow,
    read_manifest,
    read_plan,
    write_shard,
)


@dataclass(frozen=True)
class Sizing:
    """How the job asks for resources, worked out from the nodes' shapes."""

    decode_cpus: float  # per decoding task
    actors: int  # embedding actors
    actor_cpus: float
    actor_gpus: float
    threads: int  # torch threads in each actor

    def describe(self) -> str:
        gpu = f", {self.actor_gpus:g} GPU" if self.actor_gpus else ""
        return (f"{self.actors} embedding actor(s) of {self.actor_cpus:g} CPU{gpu} each, "
                f"decoding tasks of {self.decode_cpus:g} CPU")


def node_shapes() -> list[dict[str, float]]:
    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def size_for(nodes: list[dict[str, float]]) -> Sizing:
    """One actor per GPU where the nodes have GPUs; else half the CPUs embed (an actor asks at
    most for half of the largest node), and the other half decode."""
    gpus = sum(int(n.get("GPU", 0)) for n in nodes)
    cpus = sum(n.get("CPU", 0.0) for n in nodes)
    biggest = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    if gpus:
        per = min(1.0, biggest)
        return Sizing(decode_cpus=per, actors=gpus, actor_cpus=per, actor_gpus=1.0, threads=1)
    actor_cpus = max(0.5, min(4.0, biggest / 2))
    actors = max(1, int(cpus / 2 // actor_cpus))
    return Sizing(decode_cpus=min(1.0, actor_cpus), actors=actors, actor_cpus=actor_cpus,
                  actor_gpus=0.0, threads=max(1, math.floor(actor_cpus)))


def unplaceable(sizing: Sizing, nodes: list[dict[str, float]]) -> str | None:
    """Why a request fits no node, or None."""
    def fits(cpu: float, gpu: float) -> bool:
        return any(n.get("CPU", 0.0) >= cpu and n.get("GPU", 0.0) >= gpu for n in nodes)

    shapes = "; ".join(f"{n.get('CPU', 0):g} CPU, {n.get('GPU', 0):g} GPU" for n in nodes)
    if not fits(sizing.actor_cpus, sizing.actor_gpus):
        return (f"an embedding actor asks for {sizing.actor_cpus:g} CPU and "
                f"{sizing.actor_gpus:g} GPU, which no node has (nodes: {shapes or 'none'})")
    if not fits(sizing.decode_cpus, 0):
        return f"a decoding task asks for {sizing.decode_cpus:g} CPU, which no node has"
    return None


def decode_batch(batch: dict[str, np.ndarray], size: int, max_pixels: int,
                 large: int = 0) -> dict[str, np.ndarray]:
    """Read and decode a batch of manifest rows (a CPU task); ``large``: also at that size
    (what a features job's crop views are cut from)."""
    n = len(batch["row"])
    pixels = np.zeros((n, size, size, 3), np.uint8)
    big = np.zeros((n, large, large, 3), np.uint8) if large else None
    digest, reason, taken = [""] * n, [""] * n, [""] * n
    width, height = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for i, path in enumerate(batch["path"]):
        try:
            data = read_file(Path(path))
            digest[i] = content_hash(data)
            img = decode(data, size=size, max_pixels=max_pixels)
            if big is not None:
                big[i] = decode(data, size=large, max_pixels=max_pixels).pixels
        except BadImage as e:
            reason[i] = str(e)
            continue
        except Exception as e:  # never let one file stop the job
            reason[i] = f"unexpected error: {type(e).__name__}: {e}"
            continue
        pixels[i], width[i], height[i] = img.pixels, img.width, img.height
        taken[i] = img.taken_at.isoformat() if img.taken_at else ""
    out = {**batch, "pixels": pixels, "content_hash": np.array(digest, object),
           "reason": np.array(reason, object), "taken_at": np.array(taken, object),
           "width": width, "height": height}
    if big is not None:
        out["large"] = big
    return out


class Embed:
    """An actor: loads the model once, embeds each decoded batch and writes it as a shard."""

    def __init__(self, job_dir: str, threads: int) -> None:
        import torch

        from ..models import create_model, load_checkpoint

        torch.set_num_threads(threads)
        self.job_dir = Path(job_dir)
        plan = read_plan(self.job_dir)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = (load_checkpoint(self.job_dir / MODEL, device=device) if plan.checkpoint
                      else create_model(plan.model_config, device=device))
        if self.model.version != plan.version:
            raise RuntimeError(f"the model loaded on this node is {self.model.version}, the job "
                               f"was planned for {plan.version}: the nodes run another Chikaku")
        self.version = plan.version

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pa, _pq = pyarrow()
        n = len(batch["row"])
        ok = np.array([not r for r in batch["reason"]], bool)
        vectors: list[bytes | None] = [None] * n
        if ok.any():
            out = self.model.encode_images(batch["pixels"][ok]).astype(np.float32)
            for i, v in zip(np.flatnonzero(ok), out, strict=True):
                vectors[i] = v.tobytes()
        table = pa.table({
            "row": pa.array(batch["row"], pa.int64()),
            "path": pa.array(list(batch["path"]), pa.string()),
            "size": pa.array(batch["size"], pa.int64()),
            "mtime_ns": pa.array(batch["mtime_ns"], pa.int64()),
            "content_hash": pa.array([d or None for d in batch["content_hash"]], pa.string()),
            "width": pa.array(batch["width"], pa.int64()),
            "height": pa.array(batch["height"], pa.int64()),
            "taken_at": pa.array([t or None for t in batch["taken_at"]], pa.string()),
            "reason": pa.array([r or None for r in batch["reason"]], pa.string()),
            "model_version": pa.array([self.version] * n, pa.string()),
            "vector": pa.array(vectors, pa.binary()),
        })
        write_shard(self.job_dir, table)
        return {"done": np.array([n]), "bad": np.array([int((~ok).sum())])}


class Stems(Embed):
    """An actor of a features job: the model's frozen tower parts on every view of each decoded
    photo, a shard row per view (a bad file: one row with its reason)."""

    def __init__(self, job_dir: str, threads: int) -> None:
        super().__init__(job_dir, threads)
        from ..training.finetune import tower_key

        extra = read_plan(self.job_dir).extra
        self.views = list(extra["views"])
        if tower_key(self.model) != extra["tower"]:
            raise RuntimeError(f"the towers loaded on this node are {tower_key(self.model)}, "
                               f"the job was planned for {extra['tower']}")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from ..training.features import view_stems

        pa, _pq = pyarrow()
        ok = np.flatnonzero([not r for r in batch["reason"]])
        cols: dict[str, list] = {k: [] for k in ("row", "path", "view", "key", "stem", "reason")}
        made = {}
        if len(ok):
            pixels = torch.as_tensor(batch["pixels"][ok])
            large = batch["large"][ok] if "large" in batch else None
            hashes = [batch["content_hash"][i] for i in ok]
            made = {v: view_stems(self.model, pixels, large, hashes, v) for v in self.views}
        at = {int(i): j for j, i in enumerate(ok)}
        for i, row in enumerate(batch["row"]):
            if i not in at:
                cols["row"].append(int(row))
                cols["path"].append(str(batch["path"][i]))
                cols["view"].append(None)
                cols["key"].append(None)
                cols["stem"].append(None)
                cols["reason"].append(batch["reason"][i])
                continue
            for v in self.views:
                cols["row"].append(int(row))
                cols["path"].append(str(batch["path"][i]))
                cols["view"].append(v)
                cols["key"].append(f"i{batch['content_hash'][i]}{v}")
                cols["stem"].append(np.ascontiguousarray(made[v][at[i]], np.float32).tobytes())
                cols["reason"].append(None)
        rows = len(cols["row"])
        table = pa.table({"row": pa.array(cols["row"], pa.int64()),
                          "path": pa.array(cols["path"], pa.string()),
                          "view": pa.array(cols["view"], pa.string()),
                          "key": pa.array(cols["key"], pa.string()),
                          "stem": pa.array(cols["stem"], pa.binary()),
                          "reason": pa.array(cols["reason"], pa.string()),
                          "model_version": pa.array([self.version] * rows, pa.string())})
        write_shard(self.job_dir, table)
        n = len(batch["row"])
        return {"done": np.array([n]), "bad": np.array([n - len(ok)])}


class TextStems(Embed):
    """An actor of a features job: the text tower's frozen part on a batch of captions."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..training.features import text_key

        pa, _pq = pyarrow()
        texts = [str(t) for t in batch["text"]]
        stems = [np.ascontiguousarray(t.float().cpu().numpy(), np.float32).tobytes()
                 for t in self.model.text_stem(texts)]
        n = len(texts)
        write_shard(self.job_dir, pa.table({
            "row": pa.array(batch["row"], pa.int64()),
            "key": pa.array([text_key(t) for t in texts], pa.string()),
            "stem": pa.array(stems, pa.binary()),
            "model_version": pa.array([self.version] * n, pa.string())}), TEXT_SHARDS)
        return {"done": np.array([n]), "bad": np.array([0])}


class Watchdog(threading.Thread):
    """Ends the job with a message when no photo has finished for ``limit`` seconds (a request
    the cluster cannot place waits forever without an error of its own)."""

    def __init__(self, limit: float, sizing: Sizing) -> None:
        super().__init__(daemon=True, name="chikaku-stall-watch")
        self.limit, self.sizing = limit, sizing
        self.last = time.monotonic()

    def tick(self) -> None:
        self.last = time.monotonic()

    def run(self) -> None:
        while True:
            time.sleep(min(5.0, self.limit / 4))
            if time.monotonic() - self.last > self.limit:
                print(f"chikaku: no photo finished for {self.limit:g} s; the cluster could not "
                      f"run the job as sized ({self.sizing.describe()}; nodes: "
                      f"{node_shapes()}). Stopping: rerun it once the cluster has room; the "
                      "finished shards are kept.", flush=True)
                os._exit(3)


def run(job_dir: Path) -> int:
    plan: Plan = read_plan(job_dir)
    features = plan.extra.get("kind") == "features"
    done = finished_rows(job_dir)
    todo = [r for r in read_manifest(job_dir).to_pylist() if r["row"] not in done]
    texts_done = finished_rows(job_dir, TEXT_SHARDS) if features else set()
    texts = ([r for r in read_manifest(job_dir, TEXTS).to_pylist() if r["row"] not in texts_done]
             if features else [])
    print(f"chikaku: {len(todo) + len(texts)} of {plan.total} "
          f"{'photos and captions to run the towers on' if features else 'photos to embed'} "
          f"({len(done) + len(texts_done)} already in shards)", flush=True)
    if not todo and not texts:
        return 0
    ray.init()
    nodes = node_shapes()
    sizing = size_for(nodes)
    why = unplaceable(sizing, nodes)
    if why:
        print(f"chikaku: the job cannot run on this cluster: {why}", flush=True)
        return 2
    print(f"chikaku: {sizing.describe()}", flush=True)
    watch = Watchdog(plan.stall_s, sizing)
    watch.start()
    finished = len(done) + len(texts_done)
    stages = []
    if texts:  # captions need no decoding: straight to the actors
        ds = ray.data.from_items(texts, override_num_blocks=max(1, min(len(texts) // 256, 1000)))
        stages.append(ds.map_batches(TextStems, fn_constructor_args=(str(job_dir), sizing.threads),
                                     batch_size=256, num_cpus=sizing.actor_cpus,
                                     num_gpus=sizing.actor_gpus or None,
                                     compute=ray.data.ActorPoolStrategy(size=sizing.actors)))
    if todo:
        ds = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo) // 16, 1000)))
        # Decoding spreads over every node as tasks of its own: with the same resources and
        # scheduling as the actors, Ray Data would fuse it into them, and they would then
        # decode and embed in turn instead of at once.
        large = plan.extra.get("large", 0) if features else 0
        ds = ds.map_batches(decode_batch, fn_kwargs={"size": plan.input_size,
                                                     "max_pixels": plan.max_pixels,
                                                     "large": large},
                            batch_size=16, num_cpus=sizing.decode_cpus,
                            scheduling_strategy="SPREAD")
        stages.append(ds.map_batches(Stems if features else Embed,
                                     fn_constructor_args=(str(job_dir), sizing.threads),
                                     batch_size=plan.batch_size, num_cpus=sizing.actor_cpus,
                                     num_gpus=sizing.actor_gpus or None,
                                     scheduling_strategy="DEFAULT",
                                     compute=ray.data.ActorPoolStrategy(size=sizing.actors)))
    for ds in stages:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            finished += int(batch["done"].sum())
            watch.tick()
            print(f"chikaku: progress {finished}/{plan.total}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
