"""On a CUDA machine: the model, the index and training give the CPU's answers, faster.
Skipped without CUDA (see tests/conftest.py); tests/bench/gpu_check.py runs these and the GPU
benchmarks in one go."""

from __future__ import annotations

import numpy as np
import pytest

from engine.models import create_model
from tests.events import train_events

pytestmark = pytest.mark.gpu


def test_bundled_model_on_cuda_matches_the_cpu():
    cpu = create_model({"family": "bundled"}, device="cpu")
    gpu = create_model({"family": "bundled"}, device="cuda")
    pixels = np.random.default_rng(0).integers(0, 255, (8, 224, 224, 3), dtype=np.uint8)
    a, b = cpu.encode_images(pixels), gpu.encode_images(pixels)  # fp16 on the GPU
    assert np.all(np.sum(a * b, axis=1) > 0.995)
    t1, t2 = cpu.encode_texts(["a dog in snow"]), gpu.encode_texts(["a dog in snow"])
    assert float(t1[0] @ t2[0]) > 0.995
    assert cpu.version == gpu.version


def test_faiss_on_the_gpu_gives_the_cpu_results():
    from engine.index import VectorIndex, gpu_available

    if not gpu_available():
        pytest.skip("faiss has no GPU support here (install the gpu extra)")
    rng = np.random.default_rng(0)
    v = rng.normal(size=(20000, 64)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ids = np.arange(20000, dtype=np.int64)
    on_gpu = VectorIndex.build(64, "x", ids, v, use_gpu=True)
    on_cpu = VectorIndex.build(64, "x", ids, v, use_gpu=False)
    for q in v[:20]:
        assert list(on_gpu.search(q, 10)[1]) == list(on_cpu.search(q, 10)[1])
    assert on_gpu.use_gpu


def test_training_runs_on_cuda_with_mixed_precision(shapes_lib):
    from engine.config import TrainOptions

    lib, _, _ = shapes_lib
    lib.config = type(lib.config)(**{**lib.config.__dict__, "device": "cuda"})
    lib._model = None
    events = train_events(lib, TrainOptions(steps=20, batch_size=32, eval_every=10, holdout=0.25))
    losses = [e.loss for e in events if e.kind == "step" and e.loss is not None]
    assert losses and all(np.isfinite(losses))
