"""The bundled model before and after training, per zero-shot recipe step and image tower, and
what each tower costs.

    nice -n 10 .venv/bin/python tests/bench/bench_zero_shot.py [--seeds 0,1,2] [--no-train]

Zero-shot rows: flickr8k-1k's test split (200 photos, 1000 captions) through the real bundled
model for each recipe step (the first recipe; + WordNet glosses; + centring; + temperature), for
Lite0 and Lite1. The recipe was chosen on folds of the train photos
(tests/bench/bench_prompt_folds.py); the test photos only report it. Fine-tuned rows: for the
chosen recipe, per tower, a fresh library of the 1000 photos, the 800 train photos' captions
imported, `chikaku train` with default options once per seed (the project's own training path;
the seed also draws the held-out share), each model scored on the test split; mean ± sd over the
seeds. Cost, per tower in a process of its own: indexing photos/s (the library's whole indexing
pass: decode, hash, embed, store), the median latency of a text and of an image query through
Library.search, and the process's peak memory (resident set) after indexing and querying.
Decoded pixels and tower features are cached under /tmp (zero_shot_data.CACHE).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zero_shot_data as zd  # noqa: E402

from engine.evaluate import recalls  # noqa: E402
from engine.models import create_model, load_checkpoint  # noqa: E402
from engine.models.bundled import OLD_RECIPE, RECIPE, default_config  # noqa: E402

STEPS = [
    ("first recipe (names, T=1)", OLD_RECIPE),
    ("+ WordNet glosses", {**OLD_RECIPE, "prompts": RECIPE["prompts"]}),
    ("+ centring", {**OLD_RECIPE, "prompts": RECIPE["prompts"], "centre": RECIPE["centre"]}),
    (f"+ temperature {RECIPE['temperature']:g} (chosen)", RECIPE),
]
QUERIES = ["a dog running through snow", "two children playing on a beach",
           "a man riding a bicycle down a hill", "people sitting at a cafe table",
           "a girl in a red dress", "a climber on a rock face", "a black and white dog",
           "a crowd watching a parade", "a boy jumping into a swimming pool",
           "a skier in the mountains"]


def score(model, img_feats: np.ndarray, txt_feats: np.ndarray, owner: np.ndarray) -> dict:
    """A model's own heads over cached tower features (its towers are locked: the same as
    encode_images / encode_texts on the photos and captions)."""
    with torch.inference_mode():
        iv = model.image_head(torch.from_numpy(img_feats)).float().numpy()
        tv = model.text_head(torch.from_numpy(txt_feats)).float().numpy()
    return recalls(iv, tv, owner)


def cost_and_training(tower: str, dataset: Path, seeds: list[int], train: bool) -> dict:
    """Runs in its own process (its peak memory is this tower's alone)."""
    from engine.captions import import_csv
    from engine.library import Library

    work = Path(tempfile.mkdtemp(prefix="chikaku-bench-zs-"))
    lib = Library.open(work / "library", device="cpu", default_model=default_config(tower))
    t = time.perf_counter()
    report = lib.add_folders([dataset / "images"])
    rate = report.embedded / (time.perf_counter() - t)
    lib.search(QUERIES[0], k=10)  # the index built, the model warm
    text_ms = []
    for q in QUERIES * 2:
        t = time.perf_counter()
        lib.search(q, k=20)
        text_ms.append(1000 * (time.perf_counter() - t))
    image_ms = []
    for p in sorted((dataset / "images").iterdir())[:10]:
        t = time.perf_counter()
        lib.search(image=p, k=20)
        image_ms.append(1000 * (time.perf_counter() - t))
    out = {"photos_per_s": rate, "text_ms": statistics.median(text_ms),
           "image_ms": statistics.median(image_ms),
           "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "trained": []}
    if not train:
        return out
    from engine.config import TrainOptions

    import_csv(lib, dataset / "captions.csv", split="train")
    test = zd.split(dataset, "test")
    model = lib.model
    feats = zd.image_features(model, test, "test")
    texts = zd.text_features(model, test, "test")
    for seed in seeds:
        t = time.perf_counter()
        result = lib.train(TrainOptions(activate="never", resume=False, seed=seed))
        trained = load_checkpoint(result.checkpoint, device="cpu")
        out["trained"].append({**score(trained, feats, texts, test.caption_image),
                               "seconds": time.perf_counter() - t})
    return out


def encoding_speed(dataset: Path, rounds: int = 6, batch: int = 32) -> dict[str, float]:
    """Photos/s through each image tower alone (decoded pixels in, points out), the towers
    taking turns batch by batch, so a machine busy with other work slows both alike and the
    ratio holds even when the absolute figures do not."""
    test = zd.split(dataset, "test")
    models = {t: create_model(default_config(t), device="cpu") for t in zd.towers()}
    px = {t: torch.as_tensor(zd.pixels(test, "test", m.input_size)[:batch])
          for t, m in models.items()}
    times: dict[str, list[float]] = {t: [] for t in models}
    for t, m in models.items():
        m.encode_images(px[t])  # warm up
    for _ in range(rounds):
        for t, m in models.items():
            start = time.perf_counter()
            m.encode_images(px[t])
            times[t].append(time.perf_counter() - start)
    return {t: batch / statistics.median(v) for t, v in times.items()}


def ms(values: list[float]) -> str:
    return f"{np.mean(values):5.1f}±{np.std(values):4.1f}" if len(values) > 1 \
        else f"{values[0]:10.1f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(zd.DATASET))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--no-train", action="store_true", help="zero-shot rows and cost only")
    ap.add_argument("--speed", action="store_true", help="only the towers' encoding speed")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # one tower's cost and training
    args = ap.parse_args()
    dataset, seeds = Path(args.dataset), [int(s) for s in args.seeds.split(",")]
    if args.speed:
        speed = encoding_speed(dataset)
        print(f"image tower alone, photos/s, towers taking turns (load average "
              f"{Path('/proc/loadavg').read_text()[:14]}): "
              + ", ".join(f"{zd.SHORT[t]} {v:.1f}" for t, v in speed.items())
              + f"; Lite0/Lite1 {speed['tf_efficientnet_lite0'] / speed['tf_efficientnet_lite1']:.2f}x")
        return
    if args.child:
        print(json.dumps(cost_and_training(args.child, dataset, seeds, not args.no_train)))
        return

    test = zd.split(dataset, "test")
    rows = []
    for tower in zd.towers():
        base = zd.tower(tower)
        feats = zd.image_features(base, test, "test")
        texts = zd.text_features(base, test, "test")
        for label, recipe in STEPS:
            model = create_model({"family": "bundled", **recipe, "image_tower": tower},
                                 device="cpu")
            rows.append((tower, label, [score(model, feats, texts, test.caption_image)]))
        print(f"{zd.SHORT[tower]}: zero-shot rows done", file=sys.stderr)
    costs = {}
    for tower in zd.towers():
        cmd = [sys.executable, __file__, "--child", tower, "--dataset", str(dataset),
               "--seeds", args.seeds] + (["--no-train"] if args.no_train else [])
        done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
        costs[tower] = json.loads(done.stdout.strip().splitlines()[-1])
        if costs[tower]["trained"]:
            rows.append((tower, f"fine-tuned, chosen recipe ({len(seeds)} seeds)",
                         costs[tower]["trained"]))
        print(f"{zd.SHORT[tower]}: cost and training done", file=sys.stderr)

    print()
    print("flickr8k-1k test split (200 photos, 1000 captions); fine-tuned: `chikaku train` "
          f"defaults on the 800 train photos' captions, mean ± sd over seeds {args.seeds}")
    print(f"{'tower':<6} {'recipe':<34} {'t2i R@1':>10} {'R@5':>10} {'R@10':>10} "
          f"{'i2t R@1':>10} {'R@5':>10} {'R@10':>10}")
    for tower, label, sc in rows:
        cells = " ".join(f"{ms([r[f'{d}_r{k}'] for r in sc]):>10}"
                         for d in ("t2i", "i2t") for k in (1, 5, 10))
        print(f"{zd.SHORT[tower]:<6} {label:<34} {cells}")
    speed = encoding_speed(dataset)
    print()
    print("cost on this machine (CPU, "
          f"{torch.get_num_threads()} threads; load average {Path('/proc/loadavg').read_text()[:14]})")
    print(f"{'tower':<6} {'input':>5} {'encode photos/s':>15} {'index photos/s':>14} "
          f"{'text query ms':>13} {'image query ms':>14} {'peak memory MB':>14} "
          f"{'train s/seed':>12}")
    from engine.models.bundled import IMAGE_TOWERS

    for tower, c in costs.items():
        train_s = f"{np.mean([r['seconds'] for r in c['trained']]):12.0f}" if c["trained"] \
            else f"{'-':>12}"
        print(f"{zd.SHORT[tower]:<6} {IMAGE_TOWERS[tower][0]:>5} {speed[tower]:15.1f} "
              f"{c['photos_per_s']:14.1f} "
              f"{c['text_ms']:13.1f} {c['image_ms']:14.1f} {c['peak_mb']:14.0f} {train_s}")


if __name__ == "__main__":
    main()
