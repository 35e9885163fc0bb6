"""Model families behind one interface, a factory, and checkpoints (safetensors + JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_write, atomic_write_text
from ..errors import LibraryError, ModelLoadError
from ..readlimit import MB, read_text
from .devices import pick_device

if TYPE_CHECKING:
    from .base import DualEncoder

__all__ = ["DualEncoder", "create_model", "default_config", "load_checkpoint", "save_checkpoint",
           "pick_device", "FAMILIES"]

FAMILIES = ("bundled", "scratch", "openclip")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
CONFIG_LIMIT = 16 * MB  # a config and training notes take a few kilobytes


def __getattr__(name: str):
    """``DualEncoder`` on first use: importing the package does not import PyTorch."""
    if name == "DualEncoder":
        from .base import DualEncoder

        return DualEncoder
    raise AttributeError(name)


def default_config(family: str = "bundled") -> dict[str, Any]:
    """The config a new model of a family starts from: for the bundled family the current
    zero-shot recipe (a stored config without its keys keeps the recipe it was made with)."""
    if family == "bundled":
        from .recipe import default_config as bundled_default

        return bundled_default()
    return {"family": family}


def create_model(config: dict[str, Any] | None = None, device: str = "auto") -> DualEncoder:
    """Build a model from its config dict (``{"family": ...}``), untrained heads included;
    without one, the default bundled model."""
    config = dict(config or default_config())
    family = config.pop("family", "bundled")
    dev = pick_device(device)
    if family == "bundled":
        from .bundled import BundledDualEncoder

        keys = ("temperature", "unlock_image", "unlock_text", "prompts", "centre", "image_tower")
        return BundledDualEncoder(device=dev, **_known(config, keys))
    if family == "scratch":
        from .scratch import ScratchDualEncoder

        keys = ("dim", "width", "input_size", "buckets", "seed")
        return ScratchDualEncoder(device=dev, **_known(config, keys))
    if family == "openclip":
        from .openclip import OpenClipDualEncoder

        if not config.get("arch") or not config.get("weights"):
            raise ModelLoadError("a CLIP model needs an architecture and a local weights file")
        keys = ("arch", "weights", "unlock_image", "unlock_text", "model_config", "mean", "std")
        return OpenClipDualEncoder(device=dev, **_known(config, keys))
    raise ModelLoadError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")


def _known(config: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: config[k] for k in keys if k in config}


def save_checkpoint(model: DualEncoder, directory: Path, info: dict[str, Any] | None = None) -> Path:
    """Write config.json + weights.safetensors atomically into directory (created)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    meta = {"config": model.config(), "version": model.version, "parent": model.parent,
            "info": info or {}}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.trained_state().items()}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp)))
        atomic_write_text(directory / CONFIG_FILE, json.dumps(meta, indent=2, sort_keys=True))
    except OSError as e:  # a full disk: say so (no half-written file is left behind)
        raise LibraryError(f"cannot save the model in {directory}: {e.strerror or e}") from e
    return directory


def read_checkpoint_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    try:
        meta = json.loads(read_text(path, CONFIG_LIMIT))
    except FileNotFoundError as e:
        raise ModelLoadError(f"no model checkpoint at {directory} (missing {CONFIG_FILE})") from e
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: nested too deep
        raise ModelLoadError(f"the model checkpoint config {path} is unreadable: {e}") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise ModelLoadError(f"the model checkpoint config {path} is malformed")
    return meta


def load_checkpoint(directory: Path, device: str = "auto") -> DualEncoder:
    """Rebuild a model from a checkpoint folder: needs nothing but the folder."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_checkpoint_meta(directory)
    try:
        model = create_model(meta["config"], device=device)
    except ModelLoadError:
        raise
    except (TypeError, ValueError, RuntimeError) as e:  # sizes of the wrong type or sign
        raise ModelLoadError(f"the model checkpoint config in {directory} does not describe a "
                             f"model Chikaku can build: {e}") from e
    try:
        tensors = load_file(str(Path(directory) / WEIGHTS_FILE))
    except (OSError, SafetensorError, ValueError) as e:
        raise ModelLoadError(f"the model weights in {directory} are unreadable: {e}") from e
    expected = model.trained_state()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(
            f"the checkpoint in {directory} does not fit a {meta['config'].get('family')} model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, v in tensors.items():
        if v.shape != expected[k].shape:
            raise ModelLoadError(f"checkpoint tensor {k} has shape {tuple(v.shape)}, "
                                 f"expected {tuple(expected[k].shape)}")
    import torch

    with torch.no_grad():
        model.load_state_dict(tensors, strict=False)
    model.parent = meta.get("parent")
    model.forget_version()
    if meta.get("version") and model.version != meta["version"]:
        raise ModelLoadError(f"the checkpoint in {directory} is damaged (its weights do not "
                             f"give its recorded version {meta['version']})")
    return model
