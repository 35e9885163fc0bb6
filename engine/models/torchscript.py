"""The weights inside a TorchScript archive (the format of OpenAI's ``clip`` package, whose
downloads sit in ``~/.cache/clip``), read without running the archive's code.

``torch.jit.load`` would compile and run the code stored in the archive, and
``torch.load(weights_only=True)`` refuses TorchScript. But the module tree and its tensors are a
plain pickle (``data.pkl``) plus raw tensor bytes (``data/<n>``): an unpickler that builds only
inert attribute holders, ordered dicts and tensors, and refuses every other name, reads them
without running anything. The code files are never opened.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

from ..errors import ModelLoadError

# storage types a weights pickle names, and the dtype each holds
STORAGES = {"FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
            "DoubleStorage": "float64", "LongStorage": "int64", "IntStorage": "int32",
            "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
            "BoolStorage": "bool"}
# attributes of the scripted modules that are not weights: OpenAI's CLIP keeps its causal
# attention mask as a plain tensor attribute (open_clip builds its own) and three sizes as
# tensors (open_clip drops them from OpenAI's state dicts too)
NOT_WEIGHTS = ("attn_mask", "input_resolution", "context_length", "vocab_size")


def is_torchscript(names: list[str]) -> bool:
    return any("/code/" in n for n in names[:10_000])


class _Scripted:
    """A scripted module or object: only the attributes its pickle sets, nothing run."""

    def __setstate__(self, state) -> None:
        self.state = state


class _Tensor:
    """A tensor's place in the archive, read only when asked for."""

    def __init__(self, storage: tuple[str, str], offset: int, size, stride) -> None:
        self.storage, self.offset = storage, int(offset)
        self.shape, self.stride = tuple(int(d) for d in size), tuple(int(d) for d in stride)


class _Reader(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            return _Scripted
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in STORAGES:
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a weights file")

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or pid[1] not in STORAGES):
            raise pickle.UnpicklingError("an unexpected reference in the archive")
        return (pid[1], str(pid[2]))


def _rebuild(storage, offset, size, stride, *_rest) -> _Tensor:
    return _Tensor(storage, offset, size, stride)


def _flatten(obj, prefix: str, out: dict[str, _Tensor]) -> None:
    state = obj.state if isinstance(obj, _Scripted) else None
    if not isinstance(state, dict):
        return
    for name, value in state.items():
        if isinstance(value, _Scripted):
            _flatten(value, f"{prefix}{name}.", out)
        elif isinstance(value, _Tensor) and name not in NOT_WEIGHTS:
            out[f"{prefix}{name}"] = value


def _tensors(archive: zipfile.ZipFile) -> tuple[str, dict[str, _Tensor]]:
    names = archive.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if not pkl:
        raise ModelLoadError("a TorchScript archive without its data")
    root = pkl[0].split("/")[0]
    try:
        with archive.open(pkl[0]) as f:
            top = _Reader(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise ModelLoadError(f"a TorchScript archive holding more than weights ({e}), so it "
                             "is left alone") from e
    out: dict[str, _Tensor] = {}
    _flatten(top, "", out)
    return root, out


def shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a TorchScript archive; nothing but its pickle is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            _root, tensors = _tensors(archive)
    except (OSError, zipfile.BadZipFile) as e:
        raise ModelLoadError(f"a damaged archive ({e})") from e
    return {k: t.shape for k, t in tensors.items()}


def copy_weights(path: Path, dest: Path) -> Path:
    """Write the archive's weights to ``dest`` as a safetensors file (the format Chikaku loads);
    ``dest`` is replaced atomically."""
    import torch
    from safetensors.torch import save_file

    from ..atomic import atomic_write

    try:
        with zipfile.ZipFile(path) as archive:
            root, tensors = _tensors(archive)
            storages: dict[str, torch.Tensor] = {}
            out = {}
            for name, t in tensors.items():
                kind, key = t.storage
                if key not in storages:
                    raw = bytearray(archive.read(f"{root}/data/{key}"))
                    storages[key] = torch.frombuffer(raw, dtype=getattr(torch, STORAGES[kind]))
                out[name] = torch.as_strided(storages[key], t.shape, t.stride,
                                             t.offset).contiguous()
    except (OSError, zipfile.BadZipFile, KeyError, RuntimeError, ValueError) as e:
        raise ModelLoadError(f"cannot read the weights in {path}: {e}") from e
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, lambda tmp: save_file(out, str(tmp)))
    return dest
