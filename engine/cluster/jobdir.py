"""A cluster job's folder: what the coordinator and the Ray job share, on storage both can see.

::

    plan.json            the job: its id, the model version and how to load it, the folders
    manifest.parquet     the photos to embed: row, path, size, mtime_ns
    model/               the model's checkpoint folder, when it has one (a fine-tuned model)
    shards/part-R-N-U.parquet
                         finished rows, R the first manifest row in it, N how many; written to
                         a hidden temporary name, flushed and renamed, so a shard is whole or
                         absent; a rerun embeds only the rows no shard holds
    submission.json      the Ray job submission last made for it
    ingested.json        the plan's id, once ``ingest`` has taken the whole job

A features job (``chikaku cluster features``: the frozen towers' outputs for training, see
``engine.training.stems``) has the same plan and manifest (its captioned photos), and besides::

    texts.parquet        the captions: row, text
    shards/...           a row per photo view: row, view, key, stem (or the photo's reason)
    text_shards/...      a row per caption: row, key, stem
    features/            the store the shards were merged into, which training reads

Every shard row names the model version that made it. pyarrow comes with the cluster extra.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from . import INSTALL_HINT, ClusterError

PLAN = "plan.json"
MANIFEST = "manifest.parquet"
MODEL = "model"
SHARDS = "shards"
TEXTS = "texts.parquet"
TEXT_SHARDS = "text_shards"
STORE = "features"
SUBMISSION = "submission.json"
INGESTED = "ingested.json"
_SHARD = re.compile(r"^part-(\d+)-(\d+)-[0-9a-f]+\.parquet$")


def pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ClusterError(INSTALL_HINT) from e
    return pa, pq


@dataclass(frozen=True)
class Plan:
    job: str  # this plan's id: shard keys in the catalog carry it
    version: str  # the model version every shard row must name
    model_config: dict[str, Any]
    checkpoint: bool  # the model is loaded from ``model/`` (else built from its config)
    roots: list[str]  # the folders of the pass
    total: int  # manifest rows
    library: str  # the catalog's identity: ingest refuses another library's job
    input_size: int = 224  # the model's square input, in pixels
    batch_size: int = 64  # photos per embedding batch (one shard each)
    max_pixels: int = 120_000_000
    stall_s: float = 600.0  # the job gives up when no photo finishes for this long
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:16]


def write_plan(job_dir: Path, plan: Plan) -> None:
    atomic_write_bytes(job_dir / PLAN, json.dumps(asdict(plan), indent=1).encode())


def read_plan(job_dir: Path) -> Plan:
    try:
        data = json.loads((Path(job_dir) / PLAN).read_text())
        return Plan(**data)
    except FileNotFoundError as e:
        raise ClusterError(f"{job_dir} holds no cluster job: plan one first "
                           "(`chikaku cluster plan --job-dir DIR PATH...`)") from e
    except (OSError, ValueError, TypeError) as e:
        raise ClusterError(f"the job plan {Path(job_dir) / PLAN} cannot be read: {e}") from e


def write_manifest(job_dir: Path, rows: list[tuple[str, int, int]]) -> None:
    """(path, size, mtime_ns) of each photo to embed, numbered in this order."""
    pa, pq = pyarrow()
    table = pa.table({"row": pa.array(range(len(rows)), pa.int64()),
                      "path": pa.array([r[0] for r in rows], pa.string()),
                      "size": pa.array([r[1] for r in rows], pa.int64()),
                      "mtime_ns": pa.array([r[2] for r in rows], pa.int64())})
    tmp = Path(job_dir) / f".{MANIFEST}.tmp"
    pq.write_table(table, tmp)
    _flush(tmp)
    os.replace(tmp, Path(job_dir) / MANIFEST)


def read_manifest(job_dir: Path, name: str = MANIFEST):
    _pa, pq = pyarrow()
    return pq.read_table(Path(job_dir) / name)


def write_texts(job_dir: Path, texts: list[str]) -> None:
    """A features job's captions, numbered in this order."""
    pa, pq = pyarrow()
    table = pa.table({"row": pa.array(range(len(texts)), pa.int64()),
                      "text": pa.array(texts, pa.string())})
    tmp = Path(job_dir) / f".{TEXTS}.tmp"
    pq.write_table(table, tmp)
    _flush(tmp)
    os.replace(tmp, Path(job_dir) / TEXTS)


@dataclass(frozen=True)
class Shard:
    path: Path
    first: int  # the first manifest row in it
    rows: int


def shards(job_dir: Path, name: str = SHARDS) -> list[Shard]:
    """The finished shards, in manifest order (temporary files of unfinished ones are not)."""
    folder = Path(job_dir) / name
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        m = _SHARD.match(name)
        if m:
            out.append(Shard(folder / name, int(m.group(1)), int(m.group(2))))
    return sorted(out, key=lambda s: (s.first, s.path.name))


def finished_count(job_dir: Path) -> int:
    """How many of the plan's rows finished shards hold (read from the shards' names): photos,
    and a features job's captions."""
    return sum(s.rows for name in (SHARDS, TEXT_SHARDS) for s in shards(job_dir, name))


def finished_rows(job_dir: Path, name: str = SHARDS) -> set[int]:
    """The manifest rows some finished shard holds."""
    _pa, pq = pyarrow()
    done: set[int] = set()
    for shard in shards(job_dir, name):
        done.update(pq.read_table(shard.path, columns=["row"]).column("row").to_pylist())
    return done


def write_shard(job_dir: Path, table, name: str = SHARDS) -> Path:
    """One batch of finished rows, whole or not at all (its name counts the manifest rows in
    it; a features shard has a table row per view of each)."""
    _pa, pq = pyarrow()
    folder = Path(job_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = sorted(set(table.column("row").to_pylist()))
    tag = uuid.uuid4().hex[:12]
    tmp = folder / f".part-{tag}.tmp"
    pq.write_table(table, tmp)
    _flush(tmp)
    final = folder / f"part-{min(rows):012d}-{len(rows)}-{tag}.parquet"
    os.replace(tmp, final)
    return final


def _flush(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
