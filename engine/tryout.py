"""Trying CLIP weights found on this computer: add them as a model version, switch the library to
it, and tell on the library's held-out captioned photos whether search got better. Going back is
one switch to the version that was active before (``Library.activate_model``).

Held out means no model the library used before was trained on those photos: every captioned
photo when the active model was never fine-tuned here, else the photos its training set aside to
judge it (the same split, from the options it recorded).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import EngineError, LibraryError
from .models.discover import FoundModel, discover, identify

if TYPE_CHECKING:
    from .library import Library
    from .models.base import DualEncoder
    from .training.data import CaptionedPhotos

COPIES = "_clip"  # models/_clip/: weights copied out of TorchScript archives
MAX_PHOTOS = 2000  # held-out photos compared, at most: enough to tell, quick to embed captions


@dataclass
class Trial:
    version: str  # the tried model, now the active one
    previous: str  # the model active before: activate it to go back
    found: FoundModel
    photos: int  # held-out captioned photos both models were compared on (0: none)
    before: dict[str, float] | None  # recall of the previous model on them, in percent
    after: dict[str, float] | None  # recall of the tried model on them
    better: bool | None  # None: too few photos to tell, or none
    verdict: str  # one sentence for the person


def find(choice: str, folders: list[str] | None = None) -> FoundModel:
    """A discovered model by its number in the discovery list (1, 2, ...) or a weights file's
    path; a clear EngineError when it is neither."""
    text = choice.strip()
    if text.isdigit():
        found = discover(folders or []).found
        n = int(text)
        if not 1 <= n <= len(found):
            raise EngineError(f"there is no CLIP model number {n}: `chikaku models discover` "
                              f"found {len(found)}")
        return found[n - 1]
    path = Path(text).expanduser()
    if not path.is_file():
        raise EngineError(f"no such weights file: {text} (give a number from `chikaku models "
                          "discover`, or the path of a .safetensors or .pt file)")
    try:
        return identify(path.resolve(), "file")
    except EngineError as e:
        raise EngineError(f"{text} cannot be used: {e}") from e


def try_model(lib: Library, found: FoundModel, progress: Callable[[Any], None] | None = None,
              cancel: threading.Event | None = None) -> Trial:
    """Add ``found`` as a model version and activate it (re-embedding every photo, with progress),
    then compare it with the model that was active on the held-out captioned photos."""
    previous = lib.active_model_record().version
    before_model = lib.model
    photos = held_out(lib)
    version = lib.add_model(found.model(usable_weights(lib, found)), activate=True,
                            progress=progress, cancel=cancel)
    if version == previous:
        return Trial(version, previous, found, 0, None, None, None,
                     "these weights are the model already in use")
    if photos is None or not photos.ids:
        return Trial(version, previous, found, 0, None, None, None,
                     "no captioned photos to compare the two models on (add captions to "
                     "measure it)")
    return _compared(lib, found, previous, before_model, version, photos)


def usable_weights(lib: Library, found: FoundModel) -> Path:
    """The file the library loads: the found one, or for a TorchScript archive (which is never
    run) a safetensors copy of its weights in the library's models folder, made once."""
    path = Path(found.path)
    if not found.torchscript:
        return path
    from .models.torchscript import copy_weights

    st = path.stat()
    key = hashlib.blake2b(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode(),
                          digest_size=6).hexdigest()
    dest = lib.config.models_dir / COPIES / f"{path.stem}-{key}.safetensors"
    return dest if dest.is_file() else copy_weights(path, dest)


def _compared(lib: Library, found: FoundModel, previous: str, before_model: DualEncoder,
              version: str, photos: CaptionedPhotos) -> Trial:
    from .evaluate import recalls
    from .training.decide import judge, photo_scores

    after_model = lib.model
    pairs = ((before_model, previous), (after_model, version))
    stored = [{i: lib.catalog.intact_vector_of(i, v, model.dim) for i in photos.ids}
              for model, v in pairs]
    photos = photos.subset([n for n, i in enumerate(photos.ids)
                            if all(vecs[i] is not None for vecs in stored)])
    if not photos.ids:
        return Trial(version, previous, found, 0, None, None, None,
                     "the captioned photos have no vectors to compare the two models on")
    owner = np.repeat(np.arange(len(photos.ids)), [len(c) for c in photos.captions])
    texts = [c for caps in photos.captions for c in caps]
    scores, result = [], []
    for (model, _), vecs in zip(pairs, stored, strict=True):
        iv = np.stack([vecs[i] for i in photos.ids])
        tv = np.concatenate([model.encode_texts(texts[i:i + 256])
                             for i in range(0, len(texts), 256)])
        result.append(recalls(iv, tv, owner))
        scores.append(photo_scores(iv, tv, owner))
    verdict = judge(scores[0], scores[1])
    return Trial(version, previous, found, len(photos.ids), result[0], result[1],
                 verdict.better, verdict.reason)


def held_out(lib: Library) -> CaptionedPhotos | None:
    """The captioned photos no model in the active one's line was trained on (at most
    MAX_PHOTOS of them), or None when the library has no captions."""
    from .training.data import split_photos
    from .training.finetune import captioned_photos

    data = captioned_photos(lib.catalog)
    if not data.ids:
        return None
    options = _training_options(lib)
    if options is not None:
        # (fewer captioned photos now than training needed: all of them)
        with contextlib.suppress(EngineError, TypeError, ValueError):
            data = split_photos(data, float(options.get("holdout", 0.1)),
                                int(options.get("seed", 0))).judge
    return data.subset(range(min(len(data.ids), MAX_PHOTOS)))


def _training_options(lib: Library) -> dict | None:
    """The options of the nearest fine-tuning in the active model's line, or None."""
    version: str | None = lib.active_model_record().version
    seen: set[str] = set()
    while version and version not in seen:
        seen.add(version)
        rec = lib.registry.get(version)
        if rec is None:
            return None
        info = rec.info or {}
        if isinstance(info.get("options"), dict):
            return info["options"]
        version = rec.parent
    return None


def go_back(lib: Library, trial: Trial, progress: Callable[[Any], None] | None = None,
            cancel: threading.Event | None = None) -> None:
    """Switch back to the model that was active before the trial."""
    if lib.registry.get(trial.previous) is None:
        raise LibraryError(f"the model {trial.previous} is no longer in this library")
    lib.activate_model(trial.previous, progress=progress, cancel=cancel)
