"""Precomputed tower features on disk: the frozen part of each tower, run once per photo view
and caption elsewhere (``chikaku cluster features``: the cluster's Ray pipeline writes them as
shards, which the coordinator merges into one store), read by training through memory maps
instead of being held in one in-memory cache.

A store is a folder::

    meta.json          the towers it was made with (their key), the stems' shapes, the views
    image_keys.npy     sorted keys of photo views ("i" + content hash + view name)
    image.npy          their stems, row for row (float32, memory-mapped when read)
    text_keys.npy      sorted keys of captions ("t" + a hash of the text)
    text.npy           their stems

The keys are those of the in-memory cache (``features``), so a store and the cache agree on what
a photo view or a caption is; stems a store lacks (photos captioned after it was made) are
computed by the training process itself. Training then holds, for its photos, only row numbers:
a step reads the rows of its batch from the maps.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..errors import LibraryError

META = "meta.json"
SIDES = ("image", "text")


class Part(Protocol):
    """One shard's rows of one side: their keys, then (read separately) their stems."""

    def keys(self) -> list[str]: ...

    def stems(self) -> np.ndarray: ...


@dataclass
class StemStore:
    """An opened store: per side, its sorted keys and its stems, both memory-mapped."""

    path: Path
    meta: dict
    keys: dict[str, np.ndarray]
    stems: dict[str, np.ndarray]

    @staticmethod
    def open(path: Path | str) -> StemStore:
        path = Path(path)
        try:
            meta = json.loads((path / META).read_text())
            keys = {s: np.load(path / f"{s}_keys.npy", mmap_mode="r") for s in SIDES}
            stems = {s: np.load(path / f"{s}.npy", mmap_mode="r") for s in SIDES}
        except FileNotFoundError as e:
            raise LibraryError(f"{path} holds no precomputed features: make them first "
                               "(`chikaku cluster features --cluster URL --job-dir DIR`)") from e
        except (OSError, ValueError) as e:
            raise LibraryError(f"the precomputed features in {path} cannot be read ({e}): "
                               "make them again (`chikaku cluster features`)") from e
        for s in SIDES:
            if len(keys[s]) != len(stems[s]):
                raise LibraryError(f"the precomputed features in {path} are damaged ({s}: "
                                   f"{len(keys[s])} keys, {len(stems[s])} rows): make them again")
        return StemStore(path, meta, keys, stems)

    @property
    def tower(self) -> str:
        return str(self.meta.get("tower", ""))

    def rows(self, side: str, wanted: Sequence[str]) -> np.ndarray:
        """Row numbers of these keys in the side's stems, -1 where the store lacks one."""
        keys = self.keys[side]
        out = np.full(len(wanted), -1, np.int64)
        if not len(keys) or not len(wanted):
            return out
        width = keys.dtype.itemsize
        fits = np.array([len(k.encode()) <= width for k in wanted], bool)
        q = np.array([k.encode() if f else b"" for k, f in zip(wanted, fits, strict=True)],
                     dtype=keys.dtype)
        at = np.searchsorted(keys, q)
        inside = fits & (at < len(keys))
        hit = np.zeros(len(wanted), bool)
        hit[inside] = keys[at[inside]] == q[inside]
        out[hit] = at[hit]
        return out


def write_store(folder: Path, meta: dict, parts: dict[str, Sequence[Part]]) -> int:
    """Merge shards' rows into a store at ``folder`` (replacing one there), side by side: the
    keys first (sorted, each once), then every part's stems into their rows of a file mapped
    in memory, so no side is ever held whole. Returns the rows written."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}-{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir(parents=True)
    written = 0
    try:
        shapes = {}
        for side in SIDES:
            side_parts = parts.get(side, ())
            part_keys = [p.keys() for p in side_parts]
            flat = [k.encode() for ks in part_keys for k in ks]
            width = max((len(k) for k in flat), default=1)
            keys = np.unique(np.array(flat, dtype=f"S{width}"))
            np.save(tmp / f"{side}_keys.npy", keys)
            out = None
            for p, ks in zip(side_parts, part_keys, strict=True):
                if not ks:
                    continue
                stems = np.asarray(p.stems(), np.float32)
                if out is None:
                    shapes[side] = list(stems.shape[1:])
                    out = np.lib.format.open_memmap(tmp / f"{side}.npy", mode="w+",
                                                    dtype=np.float32,
                                                    shape=(len(keys), *stems.shape[1:]))
                at = np.searchsorted(keys, np.array([k.encode() for k in ks], keys.dtype))
                out[at] = stems
            if out is None:
                shapes[side] = []
                np.save(tmp / f"{side}.npy", np.zeros((0,), np.float32))
            else:
                out.flush()
                del out
            written += len(keys)
        (tmp / META).write_text(json.dumps({**meta, "shapes": shapes}, indent=1))
        old = folder.with_name(f".{folder.name}-{uuid.uuid4().hex[:8]}.old")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written


class Rows:
    """Stems kept as row numbers into matrices (a store's memory-mapped stems, then those
    computed here), read only when indexed. ``rows`` has the shape of the tensor of stems it
    stands for, less the stems' own dimensions: (views, photos) for photos, (photos,) for one
    view; indexing it as that tensor would be indexed reads just those rows."""

    def __init__(self, rows: np.ndarray, sources: Sequence[np.ndarray]) -> None:
        self.rows = rows
        self.sources = list(sources)
        self.starts = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> Rows | torch.Tensor:
        if isinstance(key, int) and self.rows.ndim > 1:
            return Rows(self.rows[key], self.sources)  # one view of every photo, still unread
        if isinstance(key, tuple):
            key = tuple(k.cpu().numpy() if isinstance(k, torch.Tensor) else k for k in key)
        elif isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        return self.read(np.asarray(self.rows[key]))

    def read(self, rows: np.ndarray) -> torch.Tensor:
        flat = rows.reshape(-1)
        shape = next((s.shape[1:] for s in self.sources if len(s)), ())
        out = np.empty((len(flat), *shape), np.float32)
        for s, src in enumerate(self.sources):
            inside = (flat >= self.starts[s]) & (flat < self.starts[s + 1])
            if inside.any():
                local = flat[inside] - self.starts[s]
                order = np.argsort(local, kind="stable")  # a map reads best in file order
                got = np.empty((len(local), *shape), np.float32)
                got[order] = src[local[order]]
                out[inside] = got
        return torch.from_numpy(out.reshape(*rows.shape, *shape))


class CaptionRows:
    """Every photo's caption stems as rows (see Rows): ``[i]`` is photo i's, a list of tensors,
    read when asked for."""

    def __init__(self, rows: np.ndarray, counts: Sequence[int],
                 sources: Sequence[np.ndarray]) -> None:
        self.rows = Rows(rows, sources)
        self.offsets = np.cumsum([0, *counts])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return list(self.rows.read(self.rows.rows[self.offsets[i] : self.offsets[i + 1]]))

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        return (self[i] for i in range(len(self)))

    def pick(self, photos, captions) -> list[torch.Tensor]:
        """Caption ``captions[k]`` of photo ``photos[k]``, for every k, in one read."""
        at = self.offsets[np.asarray(photos, np.int64)] + np.asarray(captions, np.int64)
        return list(self.rows.read(self.rows.rows[at]))
