"""Contrastive training on captioned photos, reporting progress as it goes.

Each step draws a batch of photos (one of each photo's captions, one of the photo's views: as
is, mirrored, or a random crop), embeds both sides, and takes a step on CLIP's symmetric InfoNCE
loss. The frozen part of each tower is run once and its output cached (in memory and on disk,
keyed by content): with locked towers that is the feature embedding and a step costs only the
heads; with the last blocks unlocked it is the map or token states going into those blocks, and a
step runs just them. Photos (never captions) are set aside in two parts: the best state on the
*selection* part is kept (early stopping), and the *judging* part, which no choice saw, decides
whether the result is better than the model it would replace (``decide``). Every step is a
cancel point; the run's state is saved at checkpoints so a cancelled or interrupted run resumes
where it stopped. Under torchrun the processes share each batch (``distributed``); the leader
alone evaluates, checkpoints and decides.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..atomic import atomic_write
from ..config import TrainOptions
from ..errors import Cancelled, EngineError, LibraryError
from ..evaluate import recalls
from ..models.base import HEADS, DualEncoder
from ..progress import Emit, Progress, silent
from ..recall import Recall
from .data import CaptionedPhotos
from .decide import photo_scores
from .distributed import World
from .features import FeatureCache, Prepared, prepare
from .loss import LogitScale, clip_loss, sharded_clip_loss
from .stems import CaptionRows, StemStore

TOWER_LR_SHARE = 0.1  # unlocked tower blocks learn at this share of the heads' rate


@dataclass
class TrainResult:
    version: str
    parent: str
    before: Recall  # on the judging photos, of the model it would replace
    after: Recall  # ... and of this one
    improved: bool  # judged better on photos no choice during training saw
    activated: bool
    verdict: str = ""  # the judgement in one sentence, for the person
    steps: int = 0
    photos: int = 0
    captions: int = 0
    seconds: float = 0.0
    checkpoint: str | None = None


def check_options(opt: TrainOptions) -> None:
    """Say plainly which training option is out of range, before anything starts."""
    problems = []
    if opt.steps < 1:
        problems.append(f"steps must be at least 1 (got {opt.steps})")
    if opt.batch_size < 2:
        problems.append(f"the batch size must be at least 2 (got {opt.batch_size})")
    if not opt.lr > 0 or not math.isfinite(opt.lr):
        problems.append(f"the learning rate must be a positive number (got {opt.lr})")
    if not opt.epochs > 0 or not math.isfinite(opt.epochs):
        problems.append(f"the number of passes must be a positive number (got {opt.epochs})")
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


def fit_to_data(opt: TrainOptions, photos: int, family: str) -> TrainOptions:
    """The options with the steps cut to ``opt.epochs`` passes over the ``photos`` training photos
    (a batch holds them all when they are fewer than a batch). The learning-rate schedule spans
    the steps actually taken, so a small library's short run warms up and cools down like a long
    one; run long, a hundred photos are memorised within a few dozen steps, and the selection
    part, a handful of photos, is too small to tell the early good state from the later ones.
    Not for the scratch family: towers learning from nothing need every step asked for."""
    if family == "scratch":
        return opt
    batch = min(opt.batch_size, photos)
    return replace(opt, steps=min(opt.steps, max(1, math.ceil(opt.epochs * photos / batch))))


def score(recall: Mapping[str, float]) -> float:
    """One number for early stopping and for "did it get better": mean of the six recalls."""
    return Recall.of(recall).mean


# -- the loop ------------------------------------------------------------------------------------
MARKED_SHARE = 0.5  # how often a photo's marked caption is drawn in place of a random one


class _Slices(nn.Module):
    """What DistributedDataParallel wraps: the trainable model and temperature; a call embeds
    this process's slice of a step's batch."""

    def __init__(self, trainer: Trainer) -> None:
        super().__init__()
        self.model, self.scale = trainer.model, trainer.scale
        self.draw = trainer._batch

    def forward(self, prep: Prepared, step: int):
        img, txt, hard, mask = self.draw(prep, step)
        return img, txt, self.scale(), hard, mask


class Trainer:
    def __init__(self, model: DualEncoder, train: CaptionedPhotos, held: CaptionedPhotos,
                 options: TrainOptions, cache: FeatureCache, run_dir: Path | None,
                 judge: CaptionedPhotos | None = None, world: World | None = None,
                 store: StemStore | None = None) -> None:
        self.model, self.train_data, self.held_data = model, train, held
        self.store = store  # precomputed features, read in place of computing them
        self.world = world or World()
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
        self.shared = self._share() if self.world.shared else None

    def _share(self) -> DistributedDataParallel:
        batch = min(self.opt.batch_size, len(self.train_data.ids))
        if batch < self.world.size:
            raise EngineError(f"a batch of {batch} photos cannot be shared by "
                              f"{self.world.size} processes: use fewer processes or more photos")
        # Every trainable weight is in DistributedDataParallel (which makes every process start
        # from the leader's weights), and every step uses all of them; buffers (batch-norm
        # statistics) are shared at the start only, not before every step.
        return DistributedDataParallel(_Slices(self), forward_sync_buffers=False)

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

    def _batch(self, prep: Prepared, step: int) -> tuple[torch.Tensor, torch.Tensor,
                                                          torch.Tensor | None,
                                                          torch.Tensor | None]:
        """This process's slice (all of it in one process) of the batch drawn for ``step``:
        image and text embeddings, and the hard negatives of its captions (embedded) with a
        (captions, negatives) mask of which caption each belongs to, or None, None."""
        rng = np.random.default_rng([self.opt.seed, step])
        n = len(prep.texts)
        idx = rng.permutation(n)[: min(self.opt.batch_size, n)]
        cap = [int(rng.integers(len(prep.texts[i]))) for i in idx]
        if prep.hard_of:  # the person's marks are few: their captions are drawn more often
            cap = self._prefer_marked(prep, idx, cap, rng)
        part = self.world.part(len(idx))  # drawn whole, so every process draws the same batch
        m = self.model
        if prep.cached:
            view = rng.integers(len(prep.images), size=len(idx))  # a random view of each photo
            idx, cap, view = idx[part], cap[part], view[part]
            x = prep.images[torch.as_tensor(view), torch.as_tensor(idx)]
            chosen, mask = self._hard(prep, idx, cap)
            if chosen is not None:  # one pass with the batch: normalisation sees one batch
                x = torch.cat([x, prep.hard_images[0, chosen]])
            out = m.image_head(m.image_rest(x))
            txt = m.text_head(m.text_rest(
                prep.text_stems.pick(idx, cap) if isinstance(prep.text_stems, CaptionRows)
                else [prep.text_stems[i][c] for i, c in zip(idx, cap, strict=True)]))
            return out[: len(idx)], txt, (None if chosen is None else out[len(idx):]), mask
        flips = rng.random(len(idx)) < 0.5
        idx, cap, flips = idx[part], cap[part], flips[part]
        pixels = prep.images[idx].clone()
        if self.opt.flip and flips.any():
            pixels[torch.as_tensor(flips)] = pixels[torch.as_tensor(flips)].flip(2)
        chosen, mask = self._hard(prep, idx, cap)
        if chosen is not None:
            pixels = torch.cat([pixels, prep.hard_images[chosen]])
        out = m.image_head(m.image_features(pixels))
        txt = m.text_head(m.text_features([prep.texts[i][c] for i, c in zip(idx, cap,
                                                                             strict=True)]))
        return out[: len(idx)], txt, (None if chosen is None else out[len(idx):]), mask

    @staticmethod
    def _prefer_marked(prep: Prepared, idx, cap: list[int], rng) -> list[int]:
        """Half the time, a photo with a caption that has hard negatives (a query the person
        marked results wrong for) is shown with that caption: a handful of marks among
        thousands of captions would otherwise hardly ever be drawn."""
        switch = rng.random(len(idx)) < MARKED_SHARE
        out = []
        for i, c, sw in zip(idx, cap, switch, strict=True):
            marked = [k for k, js in enumerate(prep.hard_of[i]) if js]
            out.append(marked[int(rng.integers(len(marked)))] if sw and marked else c)
        return out

    def _hard(self, prep: Prepared, idx, cap) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Which hard negatives these captions have (indices into ``prep.hard_images``), and a
        (captions, negatives) mask of which caption each is for; None, None when none."""
        if prep.hard_images is None:
            return None, None
        wanted = [prep.hard_of[i][c] for i, c in zip(idx, cap, strict=True)]
        used = sorted({j for js in wanted for j in js})
        if not used:
            return None, None
        col = {j: n for n, j in enumerate(used)}
        mask = torch.zeros(len(wanted), len(used), dtype=torch.bool, device=self.device)
        for r, js in enumerate(wanted):
            for j in js:
                mask[r, col[j]] = True
        return torch.as_tensor(used), mask

    def step(self, prep: Prepared, step: int) -> float:
        self.model.train()
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr_at(step) * g.get("share", 1.0)
        with torch.autocast(self.device.type, enabled=self.use_amp):
            if self.shared is None:
                img, txt, hard, mask = self._batch(prep, step)
                loss = share = clip_loss(img.float(), txt.float(), self.scale(),
                                         None if hard is None else hard.float(), mask)
            else:
                img, txt, scale, hard, mask = self.shared(prep, step)
                sizes = self.world.sizes(min(self.opt.batch_size, len(prep.texts)))
                share = sharded_clip_loss(img.float(), txt.float(), scale, sizes,
                                          self.world.rank,
                                          None if hard is None else hard.float(), mask)
                # DistributedDataParallel averages the gradients: scaled so the average is the
                # gradient of the whole batch's loss (see loss.py)
                loss = share * self.world.size
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scale.clamp_()
        if self.average is not None:
            with torch.no_grad():
                for a, p in zip(self.average, self.trained, strict=True):
                    a.lerp_(p.detach(), 1 - self.opt.ema)
        return self.world.total(float(share.detach()))

    def held_recall(self, prep: Prepared) -> Recall:
        return recalls(*self.held_vectors(prep))

    def judged(self, prep: Prepared | None) -> tuple[Recall, np.ndarray] | None:
        """Recall and per-photo scores on the judging photos."""
        if prep is None:
            return None
        vectors = self.held_vectors(prep)
        return recalls(*vectors), photo_scores(*vectors)

    @torch.no_grad()
    def held_vectors(self, prep: Prepared) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    def state(self, step: int, best: dict, best_score: float, best_recall: Recall | None,
              stale: int) -> dict:
        return {"step": step, "model": {k: v.detach().cpu() for k, v in
                                        self.model.trained_state().items()},
                "scale": self.scale.state_dict(), "optimizer": self.optimizer.state_dict(),
                "best": best, "best_score": best_score, "stale": stale,
                "best_recall": json.dumps(None if best_recall is None else dict(best_recall)),
                "average": [a.cpu() for a in self.average] if self.average is not None else []}

    def save_state(self, state: dict) -> None:
        if self.run_dir is None or not self.world.leader:
            return
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.run_dir / "state.pt", lambda tmp: torch.save(state, tmp))
        except (OSError, RuntimeError) as e:  # torch reports a failed write as RuntimeError
            raise LibraryError(f"cannot save the training state in {self.run_dir}: "
                               f"{getattr(e, 'strerror', None) or e}") from e

    def load_state(self) -> dict | None:
        """The saved run state, put in place; the leader's, on every process."""
        state = self.world.from_leader(self._read_state() if self.world.leader else None)
        if state is not None:
            self._apply_state(state)
        return state

    def _read_state(self) -> dict | None:
        path = self.run_dir / "state.pt" if self.run_dir else None
        if path is None or not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            return None  # a damaged run state: start over

    def _apply_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"], strict=False)
        self.scale.load_state_dict(state["scale"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.average is not None and len(state.get("average", [])) == len(self.average):
            for a, saved in zip(self.average, state["average"], strict=True):
                a.copy_(saved)


@dataclass
class Outcome:
    before: Recall  # recall on the selection photos, before any step
    after: Recall  # ... of the state kept
    judged_before: tuple[Recall, np.ndarray] | None  # recall and per-photo scores on the judging
    judged_after: tuple[Recall, np.ndarray] | None  # photos, before and after (None: no judging)


def run(trainer: Trainer, emit: Emit = silent, cancel: threading.Event | None = None) -> Outcome:
    """The training loop: returns an Outcome, and leaves the model holding the state that was
    best on the selection photos. Progress goes to ``emit``; ``cancel`` is checked every step.
    Among several processes this is the leader's part (``follow`` is the others')."""
    opt, model, world = trainer.opt, trainer.model, trainer.world
    emit(Progress("training", "prepare", 0, opt.steps,
                  message=f"reading {len(trainer.train_data.ids)} photos and "
                  f"{trainer.train_data.caption_count} captions"))
    total = (len(trainer.train_data.ids) + len(trainer.held_data.ids)
             + (len(trainer.judge_data.ids) if trainer.judge_data is not None else 0))
    photos_read = 0

    def read(n: int) -> None:  # photo by photo (in batches), so a long first read shows its pace
        nonlocal photos_read
        photos_read += n
        emit(Progress("training", "reading", photos_read, total,
                      message=f"reading photos {photos_read:,} of {total:,}"))

    store = trainer.store
    prep = prepare(model, trainer.train_data, trainer.cache, opt.flip, opt.crops, read=read,
                   store=store)
    held = prepare(model, trainer.held_data, trainer.cache, flip=False, read=read, store=store)
    judging = (prepare(model, trainer.judge_data, trainer.cache, flip=False, read=read,
                       store=store) if trainer.judge_data is not None else None)
    trainer.cache.save()
    world.wait()  # the others read the features from the cache just written
    initial = trainer.held_recall(held)  # the starting model, before any step
    judged_before = trainer.judged(judging)
    initial_state = copy.deepcopy(model.trained_state())
    emit(Progress("training", "eval", 0, opt.steps, recall=initial, message="before training"))
    state = trainer.load_state() if opt.resume else None
    if state is not None:
        start, best, best_score = state["step"], state["best"], state["best_score"]
        best_recall, stale = Recall.of(json.loads(state["best_recall"])), state["stale"]
        emit(Progress("training", "prepare", start, opt.steps,
                      message=f"resuming at step {start}"))
    else:
        # The best *trained* state wins, even if it is worse than the start: whether it is
        # good enough to use is decided by comparing it with the active model afterwards.
        start, best, best_score, stale = 0, copy.deepcopy(model.trained_state()), -1.0, 0
        best_recall = initial
    for step in range(start, opt.steps):
        if world.any(cancel is not None and cancel.is_set()):
            trainer.save_state(trainer.state(step, best, best_score, best_recall, stale))
            raise Cancelled("training was cancelled; the active model is unchanged")
        loss = trainer.step(prep, step)
        emit(Progress("training", "step", step + 1, opt.steps, loss=loss))
        done = step + 1
        if done % opt.eval_every == 0 or done == opt.steps:
            with trainer.averaged():
                rec = trainer.held_recall(held)
                now = copy.deepcopy(model.trained_state())
            emit(Progress("training", "eval", done, opt.steps, recall=rec, loss=loss))
            if score(rec) > best_score:
                best, best_score, best_recall, stale = now, score(rec), rec, 0
            else:
                stale += 1
            if world.leaders(stale >= opt.patience):
                emit(Progress("training", "step", done, opt.steps, loss=loss,
                              message=f"stopped early at step {done}: held-out recall "
                              "stopped improving"))
                break
        if done % opt.checkpoint_every == 0:
            trainer.save_state(trainer.state(done, best, best_score, best_recall, stale))
    with torch.no_grad():
        model.load_state_dict(best, strict=False)
    if opt.wise_alpha < 1.0:
        model.load_state_dict(interpolate(initial_state, best, opt.wise_alpha), strict=False)
        best_recall = trainer.held_recall(held)
        emit(Progress("training", "eval", opt.steps, opt.steps, recall=best_recall,
                      message=f"WiSE-FT: weights {opt.wise_alpha:g} of the way from the "
                      "original to the fine-tuned model"))
    judged_after = trainer.judged(judging)
    model.forget_version()
    model.eval()
    return Outcome(initial, best_recall, judged_before, judged_after)


def follow(trainer: Trainer, cancel: threading.Event | None = None) -> None:
    """A process other than the leader: train on its slice of every batch until the leader stops
    or any process is cancelled (raises Cancelled). It evaluates and saves nothing."""
    opt, world = trainer.opt, trainer.world
    world.wait()  # the leader has prepared the features and written them to the cache
    cache = FeatureCache(trainer.cache.path)
    prep = prepare(trainer.model, trainer.train_data, cache, opt.flip, opt.crops,
                   store=trainer.store)
    state = trainer.load_state() if opt.resume else None
    for step in range(state["step"] if state is not None else 0, opt.steps):
        if world.any(cancel is not None and cancel.is_set()):
            raise Cancelled("training was cancelled; the active model is unchanged")
        trainer.step(prep, step)
        done = step + 1
        if (done % opt.eval_every == 0 or done == opt.steps) and world.leaders(False):
            break


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
    hard = None if data.hard is None else [data.hard.photos.ids, data.hard.by_caption]
    h.update(json.dumps([d, parent, data.ids, data.captions, hard], sort_keys=True).encode())
    return h.hexdigest()
