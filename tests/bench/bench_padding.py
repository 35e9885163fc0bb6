"""Why the bundled image tower uses TensorFlow "same" padding: zero-shot recall both ways.

    .venv/bin/python tests/bench/bench_padding.py [--device cpu]

The bundled EfficientNet-Lite0 weights were trained in TensorFlow. Chikaku loads them into timm's
``tf_efficientnet_lite0`` (TensorFlow "same" padding); timm's ``efficientnet_lite0`` is the same
network, with the same parameter names, but pads symmetrically (and, unless told otherwise, uses
PyTorch's batch-norm epsilon 1e-5 instead of TensorFlow's 1e-3). This loads the same weights into
each and scores the zero-shot model on the flickr8k-1k test split (200 photos, 1000 captions), as
``chikaku eval`` does: symmetric padding alone, then timm's ``efficientnet_lite0`` as it comes.
Recall only: nothing is timed. Prints a table last.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import timm

from engine.evaluate import evaluate, load_dataset
from engine.models import create_model

DATASET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "flickr8k-1k"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(DATASET))
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    data = load_dataset(args.dataset, "test")
    model = create_model({"family": "bundled"}, device=args.device)
    rows = [("tf_efficientnet_lite0 (same padding)", evaluate(model, data))]
    weights = model.image_tower.state_dict()
    for label, options in (("symmetric padding, TF epsilon", dict(bn_eps=1e-3)),
                           ("efficientnet_lite0 as timm makes it", {})):
        tower = timm.create_model("efficientnet_lite0", pretrained=False, **options)
        tower.load_state_dict(weights)
        model.image_tower = tower.to(args.device).eval().requires_grad_(False)
        rows.append((label, evaluate(model, data)))
    print()
    print(f"zero-shot on the test split ({len(data.images)} photos, {len(data.captions)} "
          "captions)")
    print(f"{'image tower':<40} {'t2i R@1':>8} {'R@5':>6} {'R@10':>6} {'i2t R@1':>8} {'R@10':>6}")
    for label, r in rows:
        print(f"{label:<40} {r['t2i_r1']:8.1f} {r['t2i_r5']:6.1f} {r['t2i_r10']:6.1f} "
              f"{r['i2t_r1']:8.1f} {r['i2t_r10']:6.1f}")


if __name__ == "__main__":
    main()
