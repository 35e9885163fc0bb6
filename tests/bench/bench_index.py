"""Indexing throughput on full-size photos, measured against its own limits in one run.

    .venv/bin/python tests/bench/bench_index.py [--photos 64]

Synthesises 12-megapixel JPEGs (4000x3000, quality 90) from flickr8k-1k photos, then measures:
  (a) decode+resize alone with the production decoder, all cores;
  (b) the encoder alone on pre-decoded batches, all cores;
  (c) the real end-to-end index path (``Library.add_folders`` in a fresh process and library);
  (d) a naive baseline: full-resolution decode, resize, encode one image at a time;
  (e) the same with Pillow's reduced-size JPEG decoding (draft mode, as the production decoder
      uses): so (e)/(d) is what reduced-size decoding alone buys, and (c)/(e) what the rest of
      the pipeline (decoding threads overlapping the encoder, batches of 32) buys;
and prints images/s for each, (c)/bound with bound = 1/(1/a + 1/b) (both stages share the same
cores), the ratios, the peak RSS of the indexing process, and index bytes per photo. Table last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

DATASET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "flickr8k-1k"

CHILD = r"""
import json, resource, sys, time
from engine.library import Library
lib = Library.open(sys.argv[2], device=sys.argv[3])
lib.model
t = time.perf_counter()
report = lib.add_folders([sys.argv[1]])
wall = time.perf_counter() - t
idx = next(p for p in (lib.root / "index").glob("*.faiss"))
print(json.dumps({"wall": wall, "embedded": report.embedded, "skipped": len(report.skipped),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "index_bytes": idx.stat().st_size,
                  "catalog_bytes": sum(p.stat().st_size for p in lib.root.glob("catalog.db*"))}))
"""


def synthesise(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((DATASET / "images").iterdir())[:count]
    out = []
    for i, src in enumerate(sources):
        path = folder / f"IMG_{i:04d}.jpg"
        if not path.exists():
            Image.open(src).convert("RGB").resize((4000, 3000), Image.Resampling.BILINEAR).save(
                path, quality=90)
        out.append(path)
    return out


def rate(n: int, seconds: float) -> float:
    return n / seconds


def measure_decode(paths: list[Path], size: int) -> tuple[float, list[np.ndarray]]:
    from engine.imageio import decode_file

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        t = time.perf_counter()
        pixels = [d.pixels for d in pool.map(lambda p: decode_file(p, size=size), paths)]
        return rate(len(paths), time.perf_counter() - t), pixels


def measure_encoder(model, pixels: list[np.ndarray], batch: int = 32) -> float:
    stack = np.stack(pixels)
    model.encode_images(stack[:batch])  # warm up
    t, done = time.perf_counter(), 0
    while done < max(len(stack), 96):
        for s in range(0, len(stack), batch):
            model.encode_images(stack[s : s + batch])
            done += len(stack[s : s + batch])
    return rate(done, time.perf_counter() - t)


def measure_naive(model, paths: list[Path], reduced: bool) -> float:
    """One image at a time: decode (the whole 12 MP image, or with ``reduced`` the smallest JPEG
    scale that still covers the model's input), resize, centre-crop, encode."""
    model.encode_images(np.zeros((1, model.input_size, model.input_size, 3), np.uint8))  # warm
    t = time.perf_counter()
    for p in paths:
        im = Image.open(p)
        if reduced:
            s = model.input_size / min(im.size)
            im.draft("RGB", (max(model.input_size, int(im.width * s + 1)),
                             max(model.input_size, int(im.height * s + 1))))
        im = im.convert("RGB")
        s = model.input_size / min(im.size)
        im = im.resize((max(model.input_size, round(im.width * s)),
                        max(model.input_size, round(im.height * s))), Image.Resampling.BICUBIC)
        left, top = (im.width - model.input_size) // 2, (im.height - model.input_size) // 2
        im = im.crop((left, top, left + model.input_size, top + model.input_size))
        model.encode_images(np.asarray(im)[None])
    return rate(len(paths), time.perf_counter() - t)


def measure_end_to_end(folder: Path, work: Path, device: str) -> dict:
    run = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(work / "lib-e2e"),
                          device],
                         capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=96)
    ap.add_argument("--work", default=None, help="folder for the synthetic photos (reused)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="chikaku-bench-index-"))
    paths = synthesise(work / "photos", args.photos)
    print(f"{len(paths)} photos of 4000x3000 in {work / 'photos'}")
    shutil.rmtree(work / "lib-e2e", ignore_errors=True)
    e2e = measure_end_to_end(work / "photos", work, args.device)  # first, in a fresh process: peak RSS
    from engine.library import Library

    model = Library.open(work / "lib-bench", device=args.device).model
    a, pixels = measure_decode(paths, model.input_size)
    b = measure_encoder(model, pixels)
    d = measure_naive(model, paths[: max(8, len(paths) // 4)], reduced=False)
    e = measure_naive(model, paths[: max(8, len(paths) // 4)], reduced=True)
    c = rate(e2e["embedded"], e2e["wall"])
    bound = 1 / (1 / a + 1 / b)
    print()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"cores: {os.cpu_count()}, device: {args.device}, load average {load}")
    print(f"{'measure':<52} {'images/s':>9}")
    print(f"{'(a) decode+resize, production decoder, all cores':<52} {a:9.1f}")
    print(f"{'(b) encoder alone, pre-decoded batches of 32':<52} {b:9.1f}")
    print(f"{'(c) chikaku index, end to end':<52} {c:9.1f}")
    print(f"{'(d) naive: full decode, resize, encode one by one':<52} {d:9.1f}")
    print(f"{'(e) naive, reduced-size decode, encode one by one':<52} {e:9.1f}")
    print(f"{'bound = 1/(1/a + 1/b)':<52} {bound:9.1f}")
    print(f"{'(c) / bound':<52} {c / bound:9.2f}")
    print(f"{'(e) / (d): reduced-size decode alone':<52} {e / d:9.2f}")
    print(f"{'(c) / (e): threads and batches':<52} {c / e:9.2f}")
    print(f"{'(c) / (d): both':<52} {c / d:9.2f}")
    print(f"{'peak RSS while indexing (MB)':<52} {e2e['rss_mb']:9.0f}")
    print(f"{'index bytes per photo (FAISS file)':<52} {e2e['index_bytes'] / len(paths):9.0f}")
    print(f"{'catalog bytes per photo (SQLite)':<52} {e2e['catalog_bytes'] / len(paths):9.0f}")


if __name__ == "__main__":
    main()
