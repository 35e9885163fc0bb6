"""Contrastive training on captioned photos, as a generator of progress events.

Each step draws a batch of photos (one of each photo's captions, one of the photo's views: as
is, mirrored, or a random crop), embeds both sides, and takes a step on CLIP's symmetric InfoNCE
loss. The frozen part of each tower is run once and its output cached (in memory and on disk,
keyed by content): with locked towers that is the feature embedding and a step costs only the
heads; with the last blocks unlocked it is the map or token states going into those blocks, and a
step runs just them. Photos (never captions) are set aside in two parts: the best state on the *selection* part is
kept (early stopping), and the *judging* part, which no choice saw, decides whether the result is
better than the model it would replace (engine.decide). Every yield is a cancel
point; the run's state is saved at checkpoints so a cancelled or interrupted run resumes where it
stopped.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write
from .config import TrainOptions
from .decide import MIN_JUDGING_PHOTOS, photo_scores
from .errors import Cancelled, EngineError, LibraryError
from .evaluate import decode_all, recalls
from .loss import LogitScale, clip_loss
from .models.base import HEADS, DualEncoder
from .recall import RECALL_KEYS

MIN_PHOTOS = 8
TOWER_LR_SHARE = 0.1  # unlocked tower blocks learn at this share of the heads' rate


@dataclass
class TrainResult:
    version: str
    parent: str
    before: dict
    after: dict
    improved: bool  # judged better on photos no choice during training saw
    activated: bool
    verdict: str = ""  # the judgement in one sentence, for the person
    steps: int = 0
    photos: int = 0
    captions: int = 0
    seconds: float = 0.0
    checkpoint: str | None = None


@dataclass
class TrainEvent:
    kind: str  # prepare | step | eval | done
    step: int = 0
    total: int = 0
    loss: float | None = None
    recall: dict | None = None
    message: str = ""
    result: TrainResult | None = None


@dataclass
class CaptionedPhotos:
    ids: list[int]
    paths: list[str]
    hashes: list[str]
    captions: list[list[str]]

    def subset(self, idx) -> CaptionedPhotos:
        return CaptionedPhotos([self.ids[i] for i in idx], [self.paths[i] for i in idx],
                               [self.hashes[i] for i in idx], [self.captions[i] for i in idx])

    @property
    def caption_count(self) -> int:
        return sum(len(c) for c in self.captions)


@dataclass
class Split:
    train: CaptionedPhotos
    select: CaptionedPhotos  # chooses the state to keep (early stopping)
    judge: CaptionedPhotos  # decides whether the kept state is better; nothing chose on it


def split_photos(data: CaptionedPhotos, fraction: float, seed: int) -> Split:
    """Split by photo (all captions of a photo fall on the same side), reproducibly. The share
    ``fraction`` is set aside, half to select and half to judge; on a small library the judging
    part grows to the judging minimum, while at least half of the photos are left to train."""
    n = len(data.ids)
    if n < MIN_PHOTOS:
        raise EngineError(f"training needs at least {MIN_PHOTOS} captioned photos; the library "
                          f"has {n}. Add captions to more photos first.")
    order = np.argsort(np.array(data.ids))
    perm = order[np.random.default_rng(seed).permutation(n)]
    nominal = int(round(n * fraction))
    n_select = max(2, nominal // 2)
    n_judge = min(max(nominal - nominal // 2, MIN_JUDGING_PHOTOS), max(2, n // 2 - n_select))
    n_hold = n_select + n_judge
    return Split(data.subset(sorted(perm[n_hold:])), data.subset(sorted(perm[:n_select])),
                 data.subset(sorted(perm[n_select:n_hold])))


def check_options(opt: TrainOptions) -> None:
    """Say plainly which training option is out of range, before anything starts."""
    problems = []
    if opt.steps < 1:
        problems.append(f"steps must be at least 1 (got {opt.steps})")
    if opt.batch_size < 2:
        problems.append(f"the batch size must be at least 2 (got {opt.batch_size})")
    if not opt.lr > 0 or not math.isfinite(opt.lr):
        problems.append(f"the learning rate must be a positive number (got {opt.lr})")
    if not 0 < opt.holdout < 1:
        problems.append(f"the held-out share must be between 0 and 1 (got {opt.holdout})")
    if opt.eval_every < 1:
        problems.append(f"evaluating every {opt.eval_every} steps is not possible")
    if not 0 <= opt.crops <= 16:
        problems.append(f"crops must be between 0 and 16 (got {opt.crops})")
    if opt.unlock_image < 0 or opt.unlock_text < 0:
        problems.append("the number of unlocked blocks cannot be negative")
    if not 0 <= opt.ema < 1:
        problems.append(f"the weight-average decay must be at least 0 and below 1 (got {opt.ema})")
    if not 0 <= opt.wise_alpha <= 1:
        problems.append(f"the WiSE-FT weight must be between 0 and 1 (got {opt.wise_alpha})")
    if problems:
        raise EngineError("cannot train: " + "; ".join(problems))


def score(recall: dict) -> float:
    """One number for early stopping and for "did it get better": mean of the six recalls."""
    return float(np.mean([recall[k] for k in RECALL_KEYS]))


# -- features ------------------------------------------------------------------------------------
class FeatureCache:
    """Tower features on disk, keyed by content: a photo's hash or a caption's text."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, np.ndarray] = {}
        self.dirty = False
        if path is not None and path.is_file():
            try:
                with np.load(path) as z:
                    self.data = {k: z[k] for k in z.files}
            except (OSError, ValueError):
                self.data = {}  # a damaged cache is only lost time

    def get(self, key: str) -> np.ndarray | None:
        return self.data.get(key)

    def put(self, key: str, value: np.ndarray) -> None:
        # Feature vectors are kept exactly; the larger maps and token states of partly unlocked
        # towers in half precision (half the memory and disk, far below the training noise).
        self.data[key] = value.astype(np.float16) if value.ndim > 1 else value
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(tmp, **self.data)
            os.replace(tmp, self.path)
        except OSError:  # a full disk: the features are computed again next time
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self.dirty = False


def _text_key(text: str) -> str:
    return "t" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


CROP_SCALE = (0.5, 1.0)  # share of the photo's area a crop view keeps
CROP_DECODE = 1.3  # crop views are cut from a decode this much larger than the model's input


def views(flip: bool, crops: int) -> list[str]:
    """Names of the cached views of a training photo: "" the photo as search sees it, "f" its
    mirror image, "c0", "c0f", ... random crops (and their mirror images)."""
    out = [""] + (["f"] if flip else [])
    for j in range(crops):
        out += [f"c{j}"] + ([f"c{j}f"] if flip else [])
    return out


def _crop(pixels: np.ndarray, key: str, size: int) -> torch.Tensor:
    """A random-resized crop of one (S, S, 3) image, the same every time for the same key."""
    seed = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    rng = np.random.default_rng(seed)
    full = pixels.shape[0]
    area = rng.uniform(*CROP_SCALE) * full * full
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    w = min(full, int(round(math.sqrt(area * ratio))))
    h = min(full, int(round(math.sqrt(area / ratio))))
    y, x = int(rng.integers(0, full - h + 1)), int(rng.integers(0, full - w + 1))
    part = torch.as_tensor(pixels[y : y + h, x : x + w]).permute(2, 0, 1)[None].float()
    out = torch.nn.functional.interpolate(part, size=(size, size), mode="bilinear",
                                          antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)


@torch.inference_mode()
def image_stems(model: DualEncoder, data: CaptionedPhotos, cache: FeatureCache,
                names: list[str], batch: int = 64) -> torch.Tensor:
    """(views, photos, ...) outputs of the image tower's frozen part, cached by content."""
    keys = [[f"i{h}{v}" for v in names] for h in data.hashes]
    missing = [i for i, ks in enumerate(keys) if any(cache.get(k) is None for k in ks)]
    size = model.input_size
    crops = any(v.startswith("c") for v in names)
    for s in range(0, len(missing), batch):
        chunk = missing[s : s + batch]
        paths = [Path(data.paths[i]) for i in chunk]
        pixels = torch.as_tensor(decode_all(paths, size))
        large = decode_all(paths, int(round(size * CROP_DECODE))) if crops else None
        for v in names:
            if v.startswith("c"):
                x = torch.stack([_crop(large[j], keys[i][0] + v.rstrip("f"), size)
                                 for j, i in enumerate(chunk)])
            else:
                x = pixels
            if v.endswith("f"):
                x = x.flip(2)
            stems = model.image_stem(x).float().cpu().numpy()
            for i, f in zip(chunk, stems, strict=True):
                cache.put(f"i{data.hashes[i]}{v}", f)
    with torch.inference_mode(False):  # training takes gradients through what comes next
        return torch.stack([torch.from_numpy(np.stack([cache.get(ks[n]) for ks in keys]))
                            .float() for n in range(len(names))])


@torch.inference_mode()
def text_stems(model: DualEncoder, texts: list[str], cache: FeatureCache,
               batch: int = 256) -> list[torch.Tensor]:
    keys = [_text_key(t) for t in texts]
    missing = [i for i, k in enumerate(keys) if cache.get(k) is None]
    for s in range(0, len(missing), batch):
        chunk = missing[s : s + batch]
        stems = model.text_stem([texts[i] for i in chunk])
        for i, f in zip(chunk, stems, strict=True):
            cache.put(keys[i], f.float().cpu().numpy())
    with torch.inference_mode(False):
        return [torch.from_numpy(cache.get(k)).float() for k in keys]


@dataclass
class _Prepared:
    """Training inputs: cached stems (frozen tower parts) or decoded pixels (trainable towers)."""

    cached: bool
    images: torch.Tensor  # stems (views, N, ...) or pixels (N, H, W, 3) uint8
    texts: list[list[str]]
    text_stems: list[list[torch.Tensor]] = field(default_factory=list)  # per photo, per caption


def prepare(model: DualEncoder, data: CaptionedPhotos, cache: FeatureCache, flip: bool,
            crops: int = 0) -> _Prepared:
    if model.cacheable():
        stems = image_stems(model, data, cache, views(flip, crops))
        flat = text_stems(model, [c for caps in data.captions for c in caps], cache)
        per, at = [], 0
        for caps in data.captions:
            per.append(flat[at : at + len(caps)])
            at += len(caps)
        return _Prepared(True, stems, data.captions, per)
    pixels = torch.as_tensor(decode_all([Path(p) for p in data.paths], model.input_size))
    return _Prepared(False, pixels, data.captions)


# -- the loop ------------------------------------------------------------------------------------
class Trainer:
    def __init__(self, model: DualEncoder, train: CaptionedPhotos, held: CaptionedPhotos,
                 options: TrainOptions, cache: FeatureCache, run_dir: Path | None,
                 judge: CaptionedPhotos | None = None) -> None:
        self.model, self.train_data, self.held_data = model, train, held
        self.judge_data = judge
        self.opt = options
        self.cache = cache
        self.run_dir = run_dir
        self.device = model.device
        self.scale = LogitScale().to(self.device)
        heads, towers = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (heads if name.startswith(HEADS) else towers).append(p)
        groups = [{"params": heads + list(self.scale.parameters()), "share": 1.0}]
        if towers:  # pretrained blocks move more gently than the fresh heads
            groups.append({"params": towers, "share": TOWER_LR_SHARE})
        self.optimizer = torch.optim.AdamW(groups, lr=options.lr,
                                           weight_decay=options.weight_decay)
        self.use_amp = self.device.type == "cuda"
        # A running average of the model's trained weights (what is evaluated and kept).
        self.trained = heads + towers
        self.average = ([p.detach().clone() for p in self.trained] if options.ema > 0
                        else None)

    @contextlib.contextmanager
    def averaged(self):
        """Inside, the model holds the averaged weights (when averaging is on)."""
        if self.average is None:
            yield
            return
        current = [p.detach().clone() for p in self.trained]
        with torch.no_grad():
            for p, a in zip(self.trained, self.average, strict=True):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, c in zip(self.trained, current, strict=True):
                    p.copy_(c)

    def lr_at(self, step: int) -> float:
        warm = max(1, self.opt.steps // 20)
        if step < warm:
            return self.opt.lr * (step + 1) / warm
        progress = (step - warm) / max(1, self.opt.steps - warm)
        return self.opt.lr * 0.5 * (1 + math.cos(math.pi * progress))

    def _batch(self, prep: _Prepared, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.opt.seed, step])
        n = len(prep.texts)
        idx = rng.permutation(n)[: min(self.opt.batch_size, n)]
        cap = [int(rng.integers(len(prep.texts[i]))) for i in idx]
        m = self.model
        if prep.cached:
            view = rng.integers(len(prep.images), size=len(idx))  # a random view of each photo
            img = m.image_head(m.image_rest(prep.images[torch.as_tensor(view), torch.as_tensor(idx)]))
            txt = m.text_head(m.text_rest([prep.text_stems[i][c]
                                           for i, c in zip(idx, cap, strict=True)]))
            return img, txt
        flips = rng.random(len(idx)) < 0.5
        pixels = prep.images[idx].clone()
        if self.opt.flip and flips.any():
            pixels[torch.as_tensor(flips)] = pixels[torch.as_tensor(flips)].flip(2)
        img = m.image_head(m.image_features(pixels))
        txt = m.text_head(m.text_features([prep.texts[i][c] for i, c in zip(idx, cap,
                                                                             strict=True)]))
        return img, txt

    def step(self, prep: _Prepared, step: int) -> float:
        self.model.train()
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr_at(step) * g.get("share", 1.0)
        with torch.autocast(self.device.type, enabled=self.use_amp):
            img, txt = self._batch(prep, step)
            loss = clip_loss(img.float(), txt.float(), self.scale())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scale.clamp_()
        if self.average is not None:
            with torch.no_grad():
                for a, p in zip(self.average, self.trained, strict=True):
                    a.lerp_(p.detach(), 1 - self.opt.ema)
        return float(loss.detach())

    def held_recall(self, prep: _Prepared) -> dict:
        return recalls(*self.held_vectors(prep))

    def judged(self, prep: _Prepared | None) -> tuple[dict, np.ndarray] | None:
        """Recall and per-photo scores on the judging photos."""
        if prep is None:
            return None
        vectors = self.held_vectors(prep)
        return recalls(*vectors), photo_scores(*vectors)

    @torch.no_grad()
    def held_vectors(self, prep: _Prepared) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = self.model
        m.eval()
        if prep.cached:
            stems = prep.images[0]
            iv = torch.cat([m.image_head(m.image_rest(stems[i : i + 256]))
                            for i in range(0, len(stems), 256)])
            flat = [t for caps in prep.text_stems for t in caps]
            tv = torch.cat([m.text_head(m.text_rest(flat[i : i + 256]))
                            for i in range(0, len(flat), 256)])
        else:
            iv = torch.cat([m.image_head(m.image_features(prep.images[i : i + 64]))
                            for i in range(0, len(prep.images), 64)])
            flat = [c for caps in prep.texts for c in caps]
            tv = m.text_head(m.text_features(flat))
        owner = np.repeat(np.arange(len(prep.texts)), [len(c) for c in prep.texts])
        return iv.float().cpu().numpy(), tv.float().cpu().numpy(), owner

    # -- resumable state ------------------------------------------------------------------------
    def state(self, step: int, best: dict, best_score: float, best_recall: dict | None,
              stale: int) -> dict:
        return {"step": step, "model": {k: v.detach().cpu() for k, v in
                                        self.model.trained_state().items()},
                "scale": self.scale.state_dict(), "optimizer": self.optimizer.state_dict(),
                "best": best, "best_score": best_score, "stale": stale,
                "best_recall": json.dumps(best_recall),
                "average": [a.cpu() for a in self.average] if self.average is not None else []}

    def save_state(self, state: dict) -> None:
        if self.run_dir is None:
            return
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.run_dir / "state.pt", lambda tmp: torch.save(state, tmp))
        except (OSError, RuntimeError) as e:  # torch reports a failed write as RuntimeError
            raise LibraryError(f"cannot save the training state in {self.run_dir}: "
                               f"{getattr(e, 'strerror', None) or e}") from e

    def load_state(self) -> dict | None:
        path = self.run_dir / "state.pt" if self.run_dir else None
        if path is None or not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            return None  # a damaged run state: start over
        self.model.load_state_dict(state["model"], strict=False)
        self.scale.load_state_dict(state["scale"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.average is not None and len(state.get("average", [])) == len(self.average):
            for a, saved in zip(self.average, state["average"], strict=True):
                a.copy_(saved)
        return state


@dataclass
class Outcome:
    before: dict  # recall on the selection photos, before any step
    after: dict  # ... of the state kept
    judged_before: tuple[dict, np.ndarray] | None  # recall and per-photo scores on the judging
    judged_after: tuple[dict, np.ndarray] | None  # photos, before and after (None: no judging set)


def run(trainer: Trainer, cancel: threading.Event | None = None) -> Iterator[TrainEvent]:
    """The training loop. Yields events; returns an Outcome, and leaves the model holding the
    state that was best on the selection photos."""
    opt, model = trainer.opt, trainer.model
    yield TrainEvent("prepare", 0, opt.steps, message=f"reading {len(trainer.train_data.ids)} "
                     f"photos and {trainer.train_data.caption_count} captions")
    prep = prepare(model, trainer.train_data, trainer.cache, opt.flip, opt.crops)
    held = prepare(model, trainer.held_data, trainer.cache, flip=False)
    judging = (prepare(model, trainer.judge_data, trainer.cache, flip=False)
               if trainer.judge_data is not None else None)
    trainer.cache.save()
    initial = trainer.held_recall(held)  # the starting model, before any step
    judged_before = trainer.judged(judging)
    initial_state = copy.deepcopy(model.trained_state())
    yield TrainEvent("eval", 0, opt.steps, recall=initial, message="before training")
    state = trainer.load_state() if opt.resume else None
    if state is not None:
        start, best, best_score = state["step"], state["best"], state["best_score"]
        best_recall, stale = json.loads(state["best_recall"]), state["stale"]
        yield TrainEvent("prepare", start, opt.steps, message=f"resuming at step {start}")
    else:
        # The best *trained* state wins, even if it is worse than the start: whether it is
        # good enough to use is decided by comparing it with the active model afterwards.
        start, best, best_score, stale = 0, copy.deepcopy(model.trained_state()), -1.0, 0
        best_recall = initial
    for step in range(start, opt.steps):
        if cancel is not None and cancel.is_set():
            trainer.save_state(trainer.state(step, best, best_score, best_recall, stale))
            raise Cancelled("training was cancelled; the active model is unchanged")
        loss = trainer.step(prep, step)
        yield TrainEvent("step", step + 1, opt.steps, loss=loss)
        done = step + 1
        if done % opt.eval_every == 0 or done == opt.steps:
            with trainer.averaged():
                rec = trainer.held_recall(held)
                now = copy.deepcopy(model.trained_state())
            yield TrainEvent("eval", done, opt.steps, recall=rec, loss=loss)
            if score(rec) > best_score:
                best, best_score, best_recall, stale = now, score(rec), rec, 0
            else:
                stale += 1
            if stale >= opt.patience:
                yield TrainEvent("step", done, opt.steps, loss=loss,
                                 message=f"stopped early at step {done}: held-out recall "
                                 "stopped improving")
                break
        if done % opt.checkpoint_every == 0:
            trainer.save_state(trainer.state(done, best, best_score, best_recall, stale))
    with torch.no_grad():
        model.load_state_dict(best, strict=False)
    if opt.wise_alpha < 1.0:
        model.load_state_dict(interpolate(initial_state, best, opt.wise_alpha), strict=False)
        best_recall = trainer.held_recall(held)
        yield TrainEvent("eval", opt.steps, opt.steps, recall=best_recall,
                         message=f"WiSE-FT: weights {opt.wise_alpha:g} of the way from the "
                         "original to the fine-tuned model")
    judged_after = trainer.judged(judging)
    model.forget_version()
    model.eval()
    return Outcome(initial, best_recall, judged_before, judged_after)


def interpolate(original: dict, tuned: dict, alpha: float) -> dict:
    """WiSE-FT: (1 - alpha) * original + alpha * fine-tuned, tensor by tensor."""
    out = {}
    for k, v in tuned.items():
        if k in original and v.is_floating_point():
            out[k] = (1 - alpha) * original[k].to(v.dtype) + alpha * v
        else:
            out[k] = v
    return out


def run_key(options: TrainOptions, parent: str, data: CaptionedPhotos) -> str:
    """Names a run by what determines it, so an interrupted run is found again."""
    h = hashlib.blake2b(digest_size=8)
    d = asdict(options)
    d.pop("resume", None)
    d.pop("activate", None)
    h.update(json.dumps([d, parent, data.ids, data.captions], sort_keys=True).encode())
    return h.hexdigest()
