"""CLIP weights already on this computer: find them, say what they are, never run them.

Other tools leave open_clip checkpoints behind: Hugging Face's cache (open_clip downloads through
it), the old ``~/.cache/clip`` folder, rclip's data folder, a Downloads folder. Discovery looks
in those places (and in folders the caller names), reads only what identifies a file (a
safetensors header; a ``torch.load(weights_only=True)`` of a PyTorch file, memory-mapped), and
names its architecture and pretraining tag. A file whose loading would run code (a pickle that is
more than weights, a TorchScript archive) is reported as skipped with the reason and never loaded
further. Nothing is downloaded and nothing is written.

How a file is identified, most trusted first: the ``open_clip_config.json`` beside it, the
Hugging Face repository or file name as open_clip's own table of pretrained weights knows it, the
name of an open_clip architecture in the file name, and last the tensor shapes themselves. Every
answer is checked against the shapes of the architecture it names (built on the meta device, so
no memory is spent), so a file is offered only when it would load.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from .clipfiles import (
    NotWeights,
    fits,
    infer_config,
    is_clip,
    is_torchscript_file,
    named_config,
    plain_clip,
    read_shapes,
)
from .openclip import OPENAI_MEAN, OPENAI_STD

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
MIN_BYTES = 64 * 1024  # smaller files hold no CLIP model worth offering
MAX_BYTES = 32 * 1024**3  # larger than the largest open_clip model (ViT-bigG-14, ~10 GB)
MAX_DEPTH = 4  # how deep a folder the caller names is searched
MAX_ENTRIES = 20_000  # directory entries looked at in one folder tree, at most

# Speed and quality of known architectures: an estimate from the architecture alone (the
# pretraining data matters as much), in words a person can compare. `chikaku models try`
# measures the real thing on the library's own captions.
ESTIMATES = {
    "RN50": ("fast", "basic"), "RN101": ("fast", "basic"), "RN50x4": ("medium", "fair"),
    "RN50x16": ("slow", "good"), "RN50x64": ("very slow", "good"),
    "ViT-B-32": ("fast", "good"), "ViT-B-32-256": ("fast", "good"),
    "ViT-B-16": ("medium", "better"), "ViT-B-16-plus-240": ("medium", "better"),
    "ViT-L-14": ("slow", "very good"), "ViT-L-14-336": ("very slow", "very good"),
    "ViT-H-14": ("very slow", "excellent"), "ViT-g-14": ("very slow", "excellent"),
    "ViT-bigG-14": ("extremely slow", "the best"),
    "convnext_base": ("medium", "good"), "convnext_base_w": ("medium", "better"),
    "convnext_large_d": ("slow", "very good"),
}


@dataclass(frozen=True)
class FoundModel:
    path: str  # the weights file
    place: str  # where it was found ("Hugging Face cache", "rclip", ...)
    arch: str  # an open_clip architecture name, or "custom" (then model_config says it)
    pretrained: str  # the pretraining tag, or "unknown"
    size_bytes: int
    parameters: int
    identified_by: str  # "open_clip_config.json", "repository name", "file name", "tensor shapes"
    speed: str
    quality: str
    model_config: dict | None = None  # for an architecture open_clip has no name for
    torchscript: bool = False  # OpenAI's format: its weights are copied out to be used
    # the pixel mean and std its pretraining used, when not OpenAI's (open_clip's table or the
    # open_clip_config.json beside it says so; a file alone does not carry them)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def title(self) -> str:
        """The architecture in words: its open_clip name, or what a custom one is."""
        if self.model_config is None:
            return self.arch
        v = self.model_config.get("vision_cfg") or {}
        size = v.get("image_size", "?")
        return (f"custom CLIP (ViT {v.get('width', '?')} wide, {v.get('layers', '?')} layers, "
                f"{size[0] if isinstance(size, list) else size} px)")

    @property
    def estimate(self) -> str:
        return (f"{self.speed}, search quality {self.quality} (estimated from the "
                "architecture; trying it measures it on your captions)")

    def model(self, weights: str | Path | None = None) -> dict[str, Any]:
        """The model config that ``Library.add_model`` takes (``weights``: a copy of the file in
        a format it loads, for a TorchScript archive)."""
        if self.torchscript and weights is None:
            raise ModelLoadError("a TorchScript archive is used through a copy of its weights "
                                 "(engine.tryout makes it)")
        cfg: dict[str, Any] = {"family": "openclip", "arch": self.arch,
                               "weights": str(weights or self.path)}
        if self.model_config is not None:
            cfg["model_config"] = self.model_config
        if self.mean is not None and self.std is not None:
            cfg["mean"], cfg["std"] = list(self.mean), list(self.std)
        return cfg

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "title": self.title, "estimate": self.estimate}


@dataclass(frozen=True)
class Skipped:
    path: str
    place: str
    reason: str


@dataclass
class Discovery:
    found: list[FoundModel] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    searched: list[tuple[str, str]] = field(default_factory=list)  # (place, folder) that exist


# -- where to look ----------------------------------------------------------------------------------
def hf_hub_cache() -> Path:
    """Hugging Face's hub cache, as huggingface_hub itself finds it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return _xdg("XDG_CACHE_HOME", ".cache") / "huggingface" / "hub"


def rclip_data_dir() -> Path:
    """rclip's data folder: $RCLIP_DATADIR, else its per-platform application data folder."""
    if os.environ.get("RCLIP_DATADIR"):
        return Path(os.environ["RCLIP_DATADIR"]).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        return home / "AppData" / "Roaming" / "rclip"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "rclip"
    return home / ".local" / "share" / "rclip"


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else Path.home() / default


def known_places() -> list[tuple[str, Path]]:
    """The folders searched by default, with a name for each."""
    return [("Hugging Face cache", hf_hub_cache()),
            ("CLIP cache", _xdg("XDG_CACHE_HOME", ".cache") / "clip"),
            ("open_clip cache", _xdg("XDG_CACHE_HOME", ".cache") / "open_clip"),
            ("rclip", rclip_data_dir()),
            ("Downloads", Path.home() / "Downloads")]


# -- discovery --------------------------------------------------------------------------------------
def discover(extra: Iterable[Path | str] = (), defaults: bool = True) -> Discovery:
    """Every open_clip checkpoint in the known places (unless ``defaults`` is False) and in the
    folders given, identified; what looked like one and cannot be used, with the reason."""
    out = Discovery()
    places = known_places() if defaults else []
    places += [("folder", Path(p).expanduser()) for p in extra]
    seen: set[Path] = set()
    for place, folder in places:
        if not folder.is_dir():
            if place == "folder":
                out.skipped.append(Skipped(str(folder), place, "no such folder"))
            continue
        out.searched.append((place, str(folder)))
        for path, hint in _candidates(place, folder):
            try:
                real = path.resolve()
            except OSError:
                continue
            if real in seen:
                continue
            seen.add(real)
            try:
                out.found.append(identify(path, place, hint))
            except NotWeights:
                continue
            except ModelLoadError as e:
                out.skipped.append(Skipped(str(path), place, str(e)))
    return out


@dataclass(frozen=True)
class _Hint:
    repo: str | None = None  # a Hugging Face repository id, org/name
    config: Path | None = None  # an open_clip_config.json beside the weights


def _candidates(place: str, folder: Path) -> Iterator[tuple[Path, _Hint]]:
    if place == "Hugging Face cache":
        yield from _hub_candidates(folder)
    elif place == "Downloads":
        yield from ((p, _Hint()) for p in _files(folder, depth=0))
    else:
        yield from ((p, _Hint(config=_config_beside(p)))
                    for p in _files(folder, depth=MAX_DEPTH))


def _files(folder: Path, depth: int) -> Iterator[Path]:
    """Weight-like files under folder (depth 0: its top level only), a bounded walk."""
    budget = MAX_ENTRIES
    stack = [(folder, 0)]
    while stack and budget > 0:
        here, level = stack.pop()
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            budget -= 1
            if budget <= 0:
                break
            try:
                if entry.is_dir(follow_symlinks=False):
                    if level < depth and not entry.name.startswith("."):
                        stack.append((Path(entry.path), level + 1))
                elif entry.name.lower().endswith(WEIGHT_SUFFIXES) and entry.is_file():
                    yield Path(entry.path)
            except OSError:
                continue


def _config_beside(path: Path) -> Path | None:
    cfg = path.parent / "open_clip_config.json"
    return cfg if cfg.is_file() else None


def _hub_candidates(hub: Path) -> Iterator[tuple[Path, _Hint]]:
    """open_clip weights in a Hugging Face hub cache: models--org--name/snapshots/<rev>/."""
    try:
        repos = sorted(p for p in hub.iterdir() if p.name.startswith("models--"))
    except OSError:
        return
    for repo_dir in repos:
        repo = repo_dir.name[len("models--"):].replace("--", "/")
        snapshot = _current_snapshot(repo_dir)
        if snapshot is None:
            continue
        names = [n for n in OPEN_CLIP_FILES if (snapshot / n).is_file()]
        if names:  # the safetensors file when there are both
            yield snapshot / names[0], _Hint(repo=repo, config=_config_beside(snapshot / names[0]))
        elif "clip" in repo.lower():
            for name in ("model.safetensors", "pytorch_model.bin"):
                if (snapshot / name).is_file():
                    yield snapshot / name, _Hint(repo=repo, config=None)
                    break


def _current_snapshot(repo_dir: Path) -> Path | None:
    """The snapshot refs/main names, else the newest one."""
    snapshots = repo_dir / "snapshots"
    try:
        ref = (repo_dir / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        ref = ""
    if ref and (snapshots / ref).is_dir():
        return snapshots / ref
    try:
        found = [p for p in snapshots.iterdir() if p.is_dir()]
    except OSError:
        return None
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


# -- identification ---------------------------------------------------------------------------------
def identify(path: Path, place: str = "folder", hint: _Hint | None = None) -> FoundModel:
    """What a weights file is, or a ModelLoadError saying why it cannot be offered."""
    hint = hint or _Hint()
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ModelLoadError(f"cannot read it: {e.strerror or e}") from e
    if size < MIN_BYTES:
        raise NotWeights("too small to hold a CLIP model")
    if size > MAX_BYTES:
        raise ModelLoadError("too large to be an open_clip model")
    if hint.repo and path.name in ("model.safetensors", "pytorch_model.bin"):
        raise ModelLoadError(f"{hint.repo} is a Hugging Face transformers CLIP, not in "
                             "open_clip's format, which Chikaku loads")
    shapes = read_shapes(path)
    if not is_clip(shapes):
        raise ModelLoadError("not a CLIP model (it has no image and text towers)")
    params = sum(math.prod(s) for s in shapes.values())
    arch, tag, how, model_config = _name(path, hint, shapes)
    if needs := _hugging_face_part(arch):
        raise ModelLoadError(f"a {arch} ({tag}): its text side needs {needs} from Hugging Face, "
                             "which Chikaku does not fetch, so it cannot be used offline yet")
    base = re.sub(r"-quickgelu$", "", arch)
    speed, quality = ESTIMATES.get(base) or _estimate_by_size(params)
    mean, std = _pixel_statistics(hint, arch, tag)
    return FoundModel(str(path), place, arch, tag, size, params, how, speed, quality, model_config,
                      torchscript=is_torchscript_file(path), mean=mean, std=std)


def _pixel_statistics(hint: _Hint, arch: str, tag: str) -> tuple[tuple | None, tuple | None]:
    """(mean, std) of the pixels the weights were trained on, when known and not OpenAI's."""
    import open_clip

    cfg = _read_json(hint.config).get("preprocess_cfg") if hint.config else None
    if not isinstance(cfg, dict) and tag != "unknown" and arch != "custom":
        cfg = open_clip.get_pretrained_cfg(arch, tag)
    try:
        mean = tuple(float(v) for v in cfg["mean"])
        std = tuple(float(v) for v in cfg["std"])
    except (TypeError, KeyError, ValueError):
        return None, None
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        return None, None
    same = all(abs(a - b) < 1e-6 for a, b in zip(mean + std, OPENAI_MEAN + OPENAI_STD,
                                                 strict=True))
    return (None, None) if same else (mean, std)


def _name(path: Path, hint: _Hint, shapes: dict[str, tuple[int, ...]]
          ) -> tuple[str, str, str, dict | None]:
    """(arch, tag, how it was identified, model_config) of a file whose shapes are known."""
    tables = _pretrained_tables()
    tag = "unknown"
    guesses: list[tuple[str, str]] = []  # (arch, how), most trusted first
    if hint.config is not None:
        model_cfg = _read_open_clip_config(hint.config)
        if model_cfg is not None:
            name = named_config(model_cfg)
            if name:
                guesses.append((name, "open_clip_config.json"))
            elif plain_clip(model_cfg):
                guesses.append(("custom", "open_clip_config.json"))
    known = (tables["repo"].get(hint.repo.lower()) if hint.repo else None) \
        or tables["file"].get(path.name.lower())
    if known:
        guesses.append((known[0], "repository name" if hint.repo else "file name"))
        tag = known[1]
    named = _arch_in_name(hint.repo or path.stem)
    if named:
        guesses.append((named, "repository name" if hint.repo else "file name"))
        if tag == "unknown":
            tag = _tag_in_name(named, hint.repo or path.stem) or tag
    for arch, how in guesses:
        if arch == "custom":
            model_cfg = _read_open_clip_config(hint.config)
            if fits(shapes, model_cfg):
                return "custom", tag, how, model_cfg
            continue
        arch = _with_activation(arch, tag)
        if fits(shapes, arch):
            return arch, tag, how, None
    inferred = infer_config(shapes)
    if inferred is None:
        raise ModelLoadError("its tensors fit no open_clip architecture Chikaku knows")
    name = named_config(inferred)
    if name and fits(shapes, name):
        return _with_activation(name, tag), tag, "tensor shapes", None
    if fits(shapes, inferred):
        return "custom", tag, "tensor shapes", inferred
    raise ModelLoadError("its tensors fit no open_clip architecture Chikaku knows")


def _hugging_face_part(arch: str) -> str | None:
    """What a named architecture's text side would fetch from Hugging Face (a tokenizer or a
    text model), or None when open_clip has everything it needs."""
    if arch == "custom":
        return None
    import open_clip

    text = (open_clip.get_model_config(arch) or {}).get("text_cfg") or {}
    if text.get("hf_model_name"):
        return f"the text model {text['hf_model_name']}"
    if text.get("hf_tokenizer_name"):
        return f"the tokenizer {text['hf_tokenizer_name']}"
    return None


def _with_activation(arch: str, tag: str) -> str:
    """OpenAI's weights (and some others) were trained with QuickGELU: open_clip names that
    variant of the architecture ``<arch>-quickgelu``."""
    if tag == "unknown" or arch.endswith("-quickgelu"):
        return arch
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    quick = f"{arch}-quickgelu"
    return quick if cfg.get("quick_gelu") and quick in open_clip.list_models() else arch


@cache
def _pretrained_tables() -> dict[str, dict[str, tuple[str, str]]]:
    """open_clip's table of pretrained weights, looked up by Hugging Face repository id and by
    download file name: {"repo": {...}, "file": {...}} of (arch, tag)."""
    import open_clip

    repo: dict[str, tuple[str, str]] = {}
    file: dict[str, tuple[str, str]] = {}
    for arch, tag in open_clip.list_pretrained():
        cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
        if cfg.get("hf_hub"):
            key = "/".join(cfg["hf_hub"].strip("/").split("/")[:2]).lower()
            repo.setdefault(key, (arch, tag))
        if cfg.get("url"):
            file.setdefault(cfg["url"].rsplit("/", 1)[-1].lower(), (arch, tag))
    return {"repo": repo, "file": file}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _arch_in_name(name: str) -> str | None:
    """The longest open_clip architecture name inside a file or repository name."""
    import open_clip

    text = f"-{_norm(name)}-"
    hits = [a for a in open_clip.list_models() if f"-{_norm(a)}-" in text]
    return max(hits, key=len) if hits else None


def _tag_in_name(arch: str, name: str) -> str | None:
    import open_clip

    text = f"-{_norm(name)}-"
    tags = [t for t in open_clip.list_pretrained_tags_by_model(arch) if f"-{_norm(t)}-" in text]
    return max(tags, key=len) if tags else None


def _read_json(path: Path | None) -> dict:
    """A small JSON file's object; {} when it is missing, large, unreadable or not an object."""
    if path is None:
        return {}
    try:
        if path.stat().st_size > 1024**2:
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_open_clip_config(path: Path | None) -> dict | None:
    model_cfg = _read_json(path).get("model_cfg")
    return model_cfg if isinstance(model_cfg, dict) else None


def _estimate_by_size(params: int) -> tuple[str, str]:
    if params < 200e6:
        return "fast", "unknown"
    if params < 500e6:
        return "slow", "unknown"
    return "very slow", "unknown"


