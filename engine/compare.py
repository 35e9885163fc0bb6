"""Before you keep a fine-tuned model: the top results of a few of the person's own held-out
captions, from the model in use before and from the new one, side by side.

The captions come from the photos the fine-tune set aside to judge itself (no training step saw
them), the same photos the recall table is measured on, and each search ranks those photos, as
the recall does. The examples are spread evenly over the held-out photos, never picked for
showing the new model at its best.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import BadImage, EngineError, LibraryError

if TYPE_CHECKING:
    from .library import Library
    from .models.base import DualEncoder

MAX_PHOTOS = 300  # held-out photos searched (embedded afresh where a model has no vectors)


@dataclass(frozen=True)
class Example:
    caption: str
    photo_id: int  # the photo the caption was written for
    path: str
    before: list[tuple[int, str]]  # (photo id, path), best first, by the earlier model
    after: list[tuple[int, str]]  # ... by the new one
    before_rank: int | None  # where the captioned photo came (1 = first); None: past top k
    after_rank: int | None


def side_by_side(lib: Library, before: str, after: str, n: int = 3, k: int = 4) -> list[Example]:
    """``n`` held-out captions of the fine-tune that made ``after`` and, for each, the top ``k``
    held-out photos by the model ``before`` and by ``after``."""
    from .imageio import decode_file
    from .training.data import split_photos
    from .training.finetune import captioned_photos

    rec_after, rec_before = lib.registry.get(after), lib.registry.get(before)
    if rec_after is None or rec_before is None:
        raise LibraryError(f"no model {after if rec_after is None else before} in this library")
    options = (rec_after.info or {}).get("options") or {}
    data = captioned_photos(lib.catalog)
    try:
        data = split_photos(data, float(options.get("holdout", 0.1)),
                            int(options.get("seed", 0))).judge
    except (EngineError, TypeError, ValueError) as e:
        raise LibraryError(f"the fine-tune's held-out photos cannot be found again: {e}") from e
    data = data.subset(range(min(len(data.ids), MAX_PHOTOS)))
    if not data.ids:
        return []
    models = [_model(lib, rec) for rec in (rec_before, rec_after)]
    pixels: dict[int, np.ndarray] = {}  # decoded once, for whichever model has no vectors

    def image_vectors(model: DualEncoder) -> np.ndarray:
        rows = []
        for pid, path in zip(data.ids, data.paths, strict=True):
            vec = lib.catalog.intact_vector_of(pid, model.version, model.dim)
            if vec is None:
                if pid not in pixels:
                    try:
                        pixels[pid] = decode_file(Path(path), size=model.input_size).pixels
                    except (BadImage, OSError):
                        pixels[pid] = None
                if pixels[pid] is None:
                    vec = np.zeros(model.dim, np.float32)  # gone since: never ranks high
                else:
                    vec = model.encode_images(pixels[pid][None])[0]
            rows.append(vec / (np.linalg.norm(vec) or 1.0))
        return np.stack(rows)

    picks = sorted({round(i * (len(data.ids) - 1) / max(1, n - 1)) for i in range(n)})
    captions = [data.captions[i][0] for i in picks]
    ranked = []
    for model in models:
        iv = image_vectors(model)
        tv = model.encode_texts(captions)
        tv = tv / np.maximum(np.linalg.norm(tv, axis=1, keepdims=True), 1e-12)
        ranked.append(np.argsort(-(tv @ iv.T), axis=1, kind="stable"))
    examples = []
    for row, i in enumerate(picks):
        tops = [[(data.ids[j], data.paths[j]) for j in order[row][:k]] for order in ranked]
        ranks = [next((r + 1 for r, j in enumerate(order[row][:k]) if j == i), None)
                 for order in ranked]
        examples.append(Example(captions[row], data.ids[i], data.paths[i], tops[0], tops[1],
                                ranks[0], ranks[1]))
    return examples


def _model(lib: Library, rec) -> DualEncoder:
    active = lib.model
    if active.version == rec.version:
        return active
    return lib.registry.load(rec, lib.config.device)
