"""What the zero-shot benchmarks share: flickr8k-1k's photos and captions run once through each
bundled tower, cached under /tmp so that reruns (and the other benchmark) are cheap.

The image tower's output (the 1280 features before ImageNet's classifier) and the text tower's
caption embeddings do not depend on the zero-shot recipe; a recipe only changes what is computed
from them (``engine.models.bundled.zero_shot_points``), so each candidate costs milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from engine.evaluate import CaptionedSet, decode_all, load_dataset
from engine.models import create_model
from engine.models.bundled import IMAGE_TOWERS, BundledDualEncoder, zero_shot_points

CACHE = Path(os.environ.get("CHIKAKU_BENCH_CACHE", "/tmp/chikaku-bench-zero-shot"))
DATASET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "flickr8k-1k"
SHORT = {full: short for short, full in (("lite0", "tf_efficientnet_lite0"),
                                         ("lite1", "tf_efficientnet_lite1"))}


def _cached(name: str, make) -> np.ndarray:
    path = CACHE / name
    if path.is_file():
        return np.load(path, allow_pickle=False)
    value = make()
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as f:
        np.save(f, value)
    tmp.replace(path)
    return value


def split(dataset: Path, name: str) -> CaptionedSet:
    return load_dataset(dataset, name)


def pixels(data: CaptionedSet, split_name: str, size: int) -> np.ndarray:
    return _cached(f"pixels-{split_name}-{size}.npy", lambda: decode_all(data.images, size))


def image_features(model: BundledDualEncoder, data: CaptionedSet, split_name: str) -> np.ndarray:
    """The image tower's features for a split's photos, as search computes them."""
    def make() -> np.ndarray:
        px = torch.as_tensor(pixels(data, split_name, model.input_size))
        with torch.inference_mode():
            return np.concatenate([model.image_features(px[i : i + 50]).float().numpy()
                                   for i in range(0, len(px), 50)])
    return _cached(f"features-{model.image_tower_name}-{split_name}.npy", make)


def text_features(model: BundledDualEncoder, data: CaptionedSet, split_name: str) -> np.ndarray:
    def make() -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate([model.text_features(data.captions[i : i + 250]).float().numpy()
                                   for i in range(0, len(data.captions), 250)])
    return _cached(f"text-{split_name}.npy", make)


def tower(name: str, device: str = "cpu") -> BundledDualEncoder:
    """A bundled model with this image tower (the recipe does not matter for its features)."""
    return create_model({"family": "bundled", "image_tower": name}, device=device)


def zero_shot(model: BundledDualEncoder, features: np.ndarray, class_text: torch.Tensor,
              temperature: float) -> np.ndarray:
    """Each photo's zero-shot point for one recipe (class_text centred or not)."""
    with torch.inference_mode():
        logits = model.image_tower.get_classifier()(torch.from_numpy(features))
        return zero_shot_points(logits, class_text, temperature).numpy()


def towers() -> list[str]:
    return list(IMAGE_TOWERS)
