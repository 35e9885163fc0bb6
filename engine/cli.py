"""The command line: ``chikaku index | search | status | eval``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import threading
from datetime import datetime

from . import __version__
from .cluster.commands import add_cluster_command, add_index_options, run_index, run_step
from .config import LIBRARY_ENV, TrainOptions
from .errors import EngineError
from .feedback_cli import add_feedback_command, run_feedback
from .names_cli import add_names_command, run_names
from .recall import DIRECTIONS, KS

TOWERS = ("lite0", "lite1")  # the bundled image towers (engine.models.bundled.TOWER_NAMES)

EPILOG = f"""\
The library (catalog, index, models) lives in your user data folder, or in --library DIR,
or in ${LIBRARY_ENV}.

examples:
  chikaku index ~/Pictures
  chikaku search "a dog running through snow"
  chikaku search --image holiday.jpg
  chikaku search '"beach" + 0.5*holiday.jpg - "people"'
  chikaku status
  chikaku watch
  chikaku eval path/to/captioned-folder
  chikaku captions import --csv captions.csv
  chikaku train
  chikaku models
  chikaku names add mia photos/mia*.jpg     then: chikaku search '@mia + "red slide"'
"""


class _CommandParser(argparse.ArgumentParser):
    """A command's parser that takes its options and arguments in any order:
    ``models delete --library L VERSION`` as well as ``models delete VERSION --library L``."""

    _mixing = False

    def parse_known_args(self, args=None, namespace=None):
        # Parsers with their own commands (captions import ...) hand over to those; after "--"
        # everything is an argument, which the mixed-order parsing of Python 3.11 gets wrong.
        if self._mixing or self._subparsers is not None or "--" in (args or ()):
            return super().parse_known_args(args, namespace)
        self._mixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False


def _library_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """--library and --device, on the main parser (with defaults) and on every command (without,
    so that ``chikaku --library X status`` keeps X)."""
    keep = {} if defaults else {"default": argparse.SUPPRESS}
    parser.add_argument("--library", metavar="DIR", type=_library_dir,
                        help=f"library folder (default: ${LIBRARY_ENV} or your user data folder)",
                        **({"default": None} if defaults else keep))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"),
                        help="where the model runs (default: auto)",
                        **({"default": "auto"} if defaults else keep))


def _library_dir(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the library folder name is empty (leave --library out "
                                         f"to use ${LIBRARY_ENV} or your user data folder)")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chikaku", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Find your photos by meaning, on your own disk, offline.")
    p.add_argument("--version", action="version", version=f"chikaku {__version__}")
    _library_options(p, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _library_options(common, defaults=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)

    ix = sub.add_parser("index", parents=[common], help="add folders of photos and index them",
                        description="Index photo folders. Unchanged photos are not read again; "
                        "moved photos keep their vectors and captions; deleted ones leave.")
    ix.add_argument("paths", nargs="*", metavar="PATH",
                    help="folders to index (default: every folder already in the library)")
    ix.add_argument("--quiet", action="store_true", help="no progress bar")
    ix.add_argument("--tower", choices=TOWERS, help="a new library's image tower (lite0: faster; "
                    "lite1, the default: better, about 1.4x slower to embed a photo); an existing "
                    "library keeps its model (chikaku models upgrade --tower changes it)")
    ix.add_argument("--memory", metavar="SIZE", help="the index's memory budget, kept by the "
                    "library (8G, 512M; none: no budget): exact while small, IVF-Flat while the "
                    "vectors fit, else IVF-PQ with the largest code that fits")
    add_index_options(ix)

    se = sub.add_parser("search", parents=[common], help="find photos by text or by image",
                        description="Search by text, by an image file, or both combined: "
                        "'\"beach\" + 0.5*photo.jpg -people' (a minus with no weight excludes; "
                        "- 0.5*people subtracts; has:word makes a word of the captions, folder "
                        "or file name a condition). Prints the likely matches: their strength "
                        "(0.5 and above: a likely match; 0.8: strong) and raw cosine.")
    se.add_argument("query", nargs="?", help="what the photos show, or a combined query")
    se.add_argument("--image", metavar="FILE", help="find photos like this image file")
    many = se.add_mutually_exclusive_group()
    many.add_argument("-k", "--top", type=int, default=None, metavar="K",
                      help="this many results, likely or not (default: the likely matches)")
    many.add_argument("--all", action="store_true", help="every photo, best first")
    se.add_argument("--folder", metavar="DIR", help="only photos in this folder")
    se.add_argument("--from", dest="date_from", type=_date, metavar="YYYY-MM-DD",
                    help="only photos taken on or after this date")
    se.add_argument("--to", dest="date_to", type=_date_end, metavar="YYYY-MM-DD",
                    help="only photos taken on or before this date")
    se.add_argument("--json", action="store_true", help="print JSON")

    st = sub.add_parser("status", parents=[common], help="library size, folders, skipped files")
    st.add_argument("--json", action="store_true", help="print JSON")

    ev = sub.add_parser("eval", parents=[common], help="measure search quality on captioned "
                        "photos (Recall@1/5/10)",
                        description="Recall@1/5/10, text->image and image->text, of the "
                        "library's active model on a folder with captions.csv (image,caption).")
    ev.add_argument("dataset", metavar="DATASET", help="folder holding captions.csv")
    ev.add_argument("--split", default="test", choices=("train", "test", "all"),
                    help="sorted image names: first 80%% train, last 20%% test (default test)")
    ev.add_argument("--json", action="store_true", help="print JSON")

    wa = sub.add_parser("watch", parents=[common], help="keep the library current as folders "
                        "change, until Ctrl+C",
                        description="Index photos as they are added, edited, moved or deleted. "
                        "Changes made while nothing watched are caught first.")
    wa.add_argument("paths", nargs="*", metavar="PATH",
                    help="folders to watch (default: every folder already in the library)")
    wa.add_argument("--polling", action="store_true", help="look for changes every few seconds "
                    "instead of waiting for change events (network folders are polled anyway)")
    fo = sub.add_parser("folders", parents=[common], help="list, remove, pause or resume the "
                        "library's folders",
                        description="The folders of the library. remove takes a folder out: its "
                        "photos leave the library with their captions and vectors (the files on "
                        "disk are never touched). pause keeps its photos searchable but stops "
                        "re-scanning and watching it; resume undoes that.")
    fo.add_argument("action", nargs="?", default="list",
                    choices=("list", "remove", "pause", "resume"))
    fo.add_argument("paths", nargs="*", metavar="PATH", help="folders to remove, pause or resume")
    fo.add_argument("--json", action="store_true", help="print JSON (list)")
    _add_training_commands(sub, common)
    add_cluster_command(sub, common)
    add_names_command(sub, common)
    add_feedback_command(sub, common)
    return p


def _add_training_commands(sub, common) -> None:
    ca = sub.add_parser("captions", parents=[common], help="import captions for fine-tuning",
                        description="Import captions for the library's photos. Photos are "
                        "matched by path, relative path or file name.")
    ca_sub = ca.add_subparsers(dest="captions_command", metavar="ACTION", required=True)
    im = ca_sub.add_parser("import", parents=[common], help="import captions")
    src = im.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", metavar="FILE", help="rows of image,caption (with a header row)")
    src.add_argument("--coco", metavar="FILE", help="COCO captions JSON")
    src.add_argument("--sidecars", action="store_true",
                     help="IMG_1234.jpg.txt or IMG_1234.txt beside each photo")
    src.add_argument("--embedded", action="store_true",
                     help="descriptions inside the photos (EXIF ImageDescription, XPComment, "
                     "XMP dc:description)")
    im.add_argument("--split", choices=("train", "test"),
                    help="CSV only: keep the train or test part (as chikaku eval splits)")

    tr = sub.add_parser("train", parents=[common], help="fine-tune on your captioned photos",
                        description="Train a new model version on the library's captions. It "
                        "is activated only if it is judged better than the active model on "
                        "held-out photos no choice during training saw (unless --activate "
                        "always).")
    for name, (flag, kwargs) in _training_flags().items():
        tr.add_argument(flag, dest=name, **kwargs)
    tr.add_argument("--restart", action="store_true",
                    help="start over instead of resuming an interrupted run")
    tr.add_argument("--json", action="store_true", help="print the result as JSON")
    tr.add_argument("--distributed", action="store_true",
                    help="train in the processes torchrun starts, one per GPU (or several on "
                    "CPUs), e.g. torchrun --nproc-per-node 2 -m engine.cli train --distributed; "
                    "the first process judges, saves and registers the model")
    tr.add_argument("--ray", metavar="ADDRESS",
                    help="train in Ray Train workers, as --distributed does under torchrun: "
                    "local:N for a private Ray of N CPUs on this machine, or a cluster's address "
                    "(auto on one of its nodes, HEAD:6379, ray://HEAD:10001); the library must "
                    "be reachable from every worker")
    tr.add_argument("--workers", type=int, metavar="N",
                    help="with --ray: how many processes train together (default: N of local:N)")
    tr.add_argument("--gpu", action="store_true",
                    help="with --ray: one GPU for each worker (NCCL); without it, CPUs (gloo)")

    mo = sub.add_parser("models", parents=[common], help="list, activate or delete models")
    mo.add_argument("action", nargs="?", default="list",
                    choices=("list", "activate", "delete", "back", "add-clip", "discover", "try",
                             "upgrade"),
                    help="back: activate the model the active one was trained from; "
                    "upgrade: switch to the current bundled base model (the old one is kept: "
                    "back returns to it); "
                    "add-clip: add (and activate) CLIP weights from a local file; "
                    "discover: list CLIP weights already on this computer; "
                    "try N|FILE: switch to one of them and compare it on your captions")
    mo.add_argument("version", nargs="?", help="model version (for activate and delete); for "
                    "try, a number from discover or a weights file")
    mo.add_argument("--in", dest="folders", action="append", default=[], metavar="DIR",
                    help="discover, try: also look in this folder (may be repeated)")
    mo.add_argument("--arch", default="ViT-B-32", help="add-clip: open_clip architecture")
    mo.add_argument("--weights", metavar="FILE", help="add-clip: local CLIP weights file")
    mo.add_argument("--tower", choices=TOWERS, help="upgrade: the image tower (lite0: faster; "
                    "lite1: better, about 1.4x slower to embed a photo); default: the active "
                    "model's, or lite1 for a model of the first recipe")
    mo.add_argument("--json", action="store_true", help="print JSON")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to {2**32 - 1} "
                                         f"(got {text!r})")
    return value


def _shown(text: str) -> str:
    """Text safe to print on a terminal: control characters (escape codes, newlines), invisible
    format characters and bytes that are not UTF-8 are written as escapes, never sent raw."""
    if text.isprintable():
        return text
    out = []
    for c in text:
        if c.isprintable():
            out.append(c)
        elif "\udc80" <= c <= "\udcff":  # a byte that is not UTF-8, as Python carries it
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d")
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from e


def _date_end(text: str) -> datetime:
    return _date(text).replace(hour=23, minute=59, second=59)


def _open_library(args):
    from .library import Library

    tower = getattr(args, "tower", None) if args.command == "index" else None
    if tower is None:
        return Library.open(args.library, device=args.device)
    from .models.recipe import default_config

    lib = Library.open(args.library, device=args.device, default_model=default_config(tower))
    active = json.loads(lib.active_model_record().config_json).get("image_tower")
    if active != default_config(tower)["image_tower"]:
        print(f"chikaku: this library already has its model ({active}); --tower applies to new "
              f"libraries (to change it: chikaku models upgrade --tower {tower})", file=sys.stderr)
    return lib


def cmd_index(args) -> int:
    if args.cluster or args.job_dir:
        return run_index(args, _open_library, _shown)
    from tqdm import tqdm

    lib = _open_library(args)
    if args.memory is not None:
        budget = None if args.memory.strip().lower() == "none" else args.memory
        kind = lib.set_index_memory(budget)
        print(f"index memory budget: {budget or 'none'} (the index is {kind})")
    bar = None

    def progress(p) -> None:
        nonlocal bar
        if args.quiet or p.kind != "indexing":
            return
        if bar is None:
            bar = tqdm(total=p.total, unit="photo", desc="indexing", file=sys.stderr)
        bar.n = p.done
        bar.refresh() if p.done == p.total else bar.update(0)

    cancel = threading.Event()
    try:
        report = (lib.add_folders(args.paths, progress=progress, cancel=cancel) if args.paths
                  else lib.reindex(progress=progress, cancel=cancel))
    except KeyboardInterrupt:
        if bar:
            bar.close()
        print("\ninterrupted: photos finished so far are kept; run the same command to resume",
              file=sys.stderr)
        return 130
    finally:
        if bar:
            bar.close()
    print(f"{report.scanned} photos found: {report.added} added, {report.updated} updated, "
          f"{report.moved} moved, {report.removed} removed, {report.unchanged} unchanged, "
          f"{len(report.skipped)} skipped")
    print(f"{report.embedded} embedded, {report.reused} reused from identical photos")
    if report.missing:
        print(f"{report.missing} missing: gone from their folder, kept with their captions "
              "until a pass over their new folder or over the whole library (chikaku index)")
    if report.captions_restored:
        print(f"{report.captions_restored} captions restored to photos that came back")
    for folder, why in sorted(report.unavailable.items()):
        print(f"left alone: {_shown(folder)}: {_shown(why)}")
    if report.skipped:
        print("skipped:")
        for path, reason in sorted(report.skipped.items()):
            print(f"  {_shown(path)}: {_shown(reason)}")
    return 0


def cmd_search(args) -> int:
    if not args.query and not args.image:
        raise EngineError("give a query, or --image FILE")
    lib = _open_library(args)
    k = max(lib.status().photos, 1) if args.all else args.top
    hits = lib.search(args.query, k=k, image=args.image, folder=args.folder,
                      date_from=args.date_from, date_to=args.date_to)
    if args.json:
        print(json.dumps([{"rank": i + 1, "id": h.photo_id, "path": h.path,
                           "score": _rounded(h.score), "strength": round(h.strength, 4),
                           "match": h.match, "words": h.words,
                           "date": h.date.isoformat() if h.date else None}
                          for i, h in enumerate(hits)], indent=2))
        return 0
    if not hits:
        print("no photos match the query and filters")
    for i, h in enumerate(hits):
        cosine = "     -" if _rounded(h.score) is None else f"{h.score:6.3f}"
        print(f"{i + 1:>3}  {h.strength:4.2f} {h.match:6s}  {cosine}  {_shown(h.path)}")
    return 0


def _rounded(score: float) -> float | None:
    """A raw cosine for JSON: None where there is none (a photo found by its words alone)."""
    return None if score != score else round(score, 4)


def cmd_status(args) -> int:
    lib = _open_library(args)
    st = lib.status()
    upgrade = lib.upgrade_available()
    if args.json:
        print(json.dumps({"library": st.root, "photos": st.photos, "embedded": st.embedded,
                          "folders": st.folders, "model": st.model_version,
                          "upgrade": upgrade, "captions": st.captions,
                          "skipped": [{"path": p, "reason": r} for p, r in st.skipped]},
                         indent=2))
        return 0
    print(f"library:  {_shown(st.root)}")
    print(f"photos:   {st.photos} searchable ({st.embedded} embedded by the active model)")
    print(f"model:    {st.model_version}")
    if upgrade:
        print(f"upgrade:  available (chikaku models upgrade): {upgrade}")
    print(f"captions: {st.captions}")
    if st.missing or st.kept_captions:
        print(f"missing:  {st.missing} photos gone from their folder (kept), "
              f"{st.kept_captions} captions kept for photos that left")
    print("folders:  " + (", ".join(map(_shown, st.folders)) if st.folders
                          else "none yet (chikaku index PATH)"))
    print(f"skipped:  {len(st.skipped)}")
    for path, reason in st.skipped:
        print(f"  {_shown(path)}: {_shown(reason)}")
    return 0


def cmd_eval(args) -> int:
    from .evaluate import evaluate, load_dataset

    data = load_dataset(args.dataset, split=args.split)
    lib = _open_library(args)
    model = lib.model
    res = evaluate(model, data, progress=None if args.json else
                   (lambda m: print(m, file=sys.stderr)))
    if args.json:
        print(json.dumps({**res, "model": model.version, "split": args.split}, indent=2))
        return 0
    print(f"model {model.version} on {res['photos']} photos, {res['captions']} captions "
          f"({args.split} split)")
    print("           " + "".join(f"{f'R@{k}':>8}" for k in KS))
    for d, label in DIRECTIONS:
        print(f"{label:<11}" + "".join(f"{res[f'{d}_r{k}']:8.1f}" for k in KS))
    return 0


def cmd_captions(args) -> int:
    from . import captions

    lib = _open_library(args)
    if args.split and not args.csv:
        raise EngineError("--split applies to --csv only")
    if args.csv:
        report = captions.import_csv(lib, args.csv, split=args.split)
    elif args.coco:
        report = captions.import_coco(lib, args.coco)
    elif args.sidecars:
        report = captions.import_sidecars(lib)
    else:
        report = captions.import_embedded(lib)
    print(report.summary())
    for name, why in report.unmatched[:50]:
        print(f"  not matched: {_shown(name)}: {_shown(why)}")
    if len(report.unmatched) > 50:
        print(f"  ... and {len(report.unmatched) - 50} more")
    return 0


def _recall_table(before: dict, after: dict) -> str:
    rows = ["held-out recall   before   after"]
    for d, label in DIRECTIONS:
        for k in KS:
            rows.append(f"{f'{label} R@{k}':<17}{before[f'{d}_r{k}']:7.1f} "
                        f"{after[f'{d}_r{k}']:7.1f}")
    return "\n".join(rows)


def _train_interrupted(lib, stage: str | None) -> str:
    if stage != "reembed":
        return "interrupted: the active model is unchanged; run the same command to resume"
    saved = [m for m in lib.models() if not m.active]
    version = max(saved, key=lambda m: m.created_at).version if saved else "VERSION"
    return (f"interrupted: the new model {version} is saved, and the photos embedded with it so "
            f"far are kept; the active model is unchanged until `chikaku models activate "
            f"{version}` finishes the switch")


def _training_flags() -> dict[str, tuple[str, dict]]:
    """`chikaku train`'s option flags, derived from TrainOptions' fields that carry help."""
    flags = {}
    for f in dataclasses.fields(TrainOptions):
        if "help" not in f.metadata:
            continue
        meta = dict(f.metadata)
        help_text = meta.pop("help")
        if f.default is not None:
            help_text += f" (default {f.default})"
        kind = _seed if f.name == "seed" else meta.pop("type", type(f.default))
        meta.pop("type", None)
        flags[f.name] = ("--" + f.name.replace("_", "-"),
                         dict(type=kind, default=f.default, help=help_text, **meta))
    return flags


def cmd_train(args) -> int:
    opts = TrainOptions(**{name: getattr(args, name) for name in _training_flags()},
                        resume=not args.restart)
    if args.ray is not None:
        return _train_on_ray(args, opts)
    if args.workers is not None or args.gpu:
        raise EngineError("--workers and --gpu go with --ray (under torchrun, --nproc-per-node "
                          "sets the processes and --device cuda the GPUs)")
    if not args.distributed:
        return _train_here(args, opts)
    from .training.distributed import start, stop

    world, args.device = start(args.device)
    try:
        if world.leader:
            return _train_here(args, opts)
        return _train_alongside(args, opts)
    finally:
        stop()


def _train_on_ray(args, opts: TrainOptions) -> int:
    """`chikaku train --ray`: Ray Train starts the processes and their process group, and each
    runs ``ray_rank``; the first one's result is printed here."""
    from importlib import import_module

    from .cluster.train import train_on_ray
    from .training.loop import TrainResult, check_options

    if args.distributed:
        raise EngineError("--ray and --distributed are two ways of starting the processes "
                          "(Ray Train or torchrun): give one of them")
    check_options(opts)
    lib = _open_library(args)  # here first: a missing library is said before Ray starts
    work_dir = lib.config.cache_dir / "ray-train"
    lib.close()
    # by its module's name, which the workers import (not as __main__ under python -m)
    rank = import_module("engine.cli").ray_rank
    out = train_on_ray(rank, {"args": args, "options": opts}, args.ray, work_dir,
                       workers=args.workers, gpu=args.gpu)
    if args.json:
        print(json.dumps(out["result"], indent=2))
        return 0
    _print_trained(TrainResult(**out["result"]), out["message"])
    return 0


def ray_rank(job: dict) -> dict | None:
    """One Ray Train worker's part of `chikaku train --ray`, in the process group Ray Train set
    up: what a torchrun process does under `--distributed`. The first worker trains, judges and
    registers the model and returns the result (its progress goes to standard error, which Ray
    shows on the command's); the others train alongside and return None."""
    from dataclasses import asdict

    from .training.distributed import joined

    args, opts = job["args"], job["options"]
    world, args.device = joined()
    if not world.leader:
        _train_alongside(args, opts)
        return None
    message = ""

    def show(ev) -> None:
        nonlocal message
        if ev.job == "training" and ev.kind == "eval" and ev.recall:
            print(f"step {ev.done}/{ev.total}: loss {ev.loss or 0:.3f}, text-to-photo R@10 "
                  f"{ev.recall.t2i_r10:.1f}", file=sys.stderr, flush=True)
        elif ev.job == "training" and ev.message and ev.kind in ("prepare", "step"):
            print(_shown(ev.message), file=sys.stderr, flush=True)
        if ev.kind == "done" and ev.job == "training":
            message = ev.message

    lib = _open_library(args)
    try:
        result = lib.train(opts, progress=show)
    finally:
        lib.close()
    return {"result": json.loads(json.dumps(asdict(result))), "message": message}


def _train_alongside(args, opts: TrainOptions) -> int:
    """A process other than torchrun's first: train on its share of every batch, quietly."""
    from .training.finetune import TrainingSite, follow_training

    lib = _open_library(args)
    try:
        follow_training(TrainingSite(lib.catalog, lib.registry, lib.config,
                                     active_model=lambda: lib.model), opts)
    finally:
        lib.close()
    return 0


def _train_here(args, opts: TrainOptions) -> int:
    from tqdm import tqdm

    lib = _open_library(args)
    cancel = threading.Event()
    bar = tqdm(total=opts.steps, unit="step", desc="training", file=sys.stderr,
               disable=args.json)
    stage = None
    message = ""

    def show(ev) -> None:
        nonlocal stage, message
        stage = "reembed" if ev.job == "activating" else ev.kind
        if ev.job == "activating":
            if ev.kind == "indexing" and ev.total:
                bar.set_description(f"re-embedding photos {ev.done}/{ev.total}"[:40])
        elif ev.kind == "step":
            bar.set_description("training", refresh=False)
            bar.total = ev.total or bar.total  # the steps fitted to the photos (--epochs)
            bar.n = ev.done
            bar.set_postfix(loss=f"{ev.loss:.3f}", refresh=False)
            bar.update(0)
        elif ev.kind == "eval" and ev.recall:
            bar.set_postfix(loss=f"{ev.loss or 0:.3f}", r10=ev.recall.t2i_r10)
        elif ev.kind == "reading" and ev.total:
            bar.set_description(f"reading {ev.done}/{ev.total}")
        elif ev.kind == "prepare" and ev.message:
            bar.set_description("training")
        if ev.job == "training" and ev.message and ev.kind in ("prepare", "step"):
            bar.write(_shown(ev.message), file=sys.stderr)
        if ev.kind == "done" and ev.job == "training":
            message = ev.message

    try:
        result = lib.train(opts, progress=show, cancel=cancel)
    except KeyboardInterrupt:
        bar.close()
        print("\n" + _train_interrupted(lib, stage), file=sys.stderr)
        return 130
    finally:
        bar.close()
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(result), indent=2))
        return 0
    _print_trained(result, message)
    return 0


def _print_trained(result, message: str) -> None:
    print(f"model {result.version} trained from {result.parent} on {result.photos} photos, "
          f"{result.captions} captions in {result.seconds:.0f} s")
    print(_recall_table(result.before, result.after))
    print(message)


def _models_discover(args) -> int:
    from .models.discover import discover

    found = discover(args.folders)
    if args.json:
        print(json.dumps({"found": [f.as_dict() for f in found.found],
                          "skipped": [vars(s) for s in found.skipped],
                          "searched": [{"place": p, "folder": f} for p, f in found.searched]},
                         indent=2))
        return 0
    print("searched: " + ("; ".join(f"{p} ({_shown(f)})" for p, f in found.searched)
                          or "none of the usual places exists"))
    if not found.found:
        print("no CLIP weights found (nothing was downloaded; add a folder with --in DIR)")
    for n, f in enumerate(found.found, 1):
        print(f"{n:>3}  {f.title}  {f.pretrained}  {f.size_bytes / 1e6:,.0f} MB  [{f.place}]")
        print(f"     {_shown(f.path)}")
        print(f"     {f.estimate}; identified by {f.identified_by}"
              + ("; a TorchScript archive: its weights are copied into the library when tried, "
                 "its code is never run" if f.torchscript else ""))
    for s in found.skipped:
        print(f"skipped: {_shown(s.path)}: {_shown(s.reason)}")
    if found.found:
        print("try one (the library switches to it; nothing is downloaded): "
              "chikaku models try NUMBER")
    return 0


@contextlib.contextmanager
def _embedding_bar(quiet: bool):
    """A progress callback drawing photos embedded as a bar on stderr (none when ``quiet``),
    closed when the job ends."""
    from tqdm import tqdm

    bar = None

    def progress(p) -> None:
        nonlocal bar
        if p.total and not quiet:
            if bar is None:
                bar = tqdm(total=p.total, unit="photo", desc="embedding", file=sys.stderr)
            bar.n = p.done
            bar.update(0)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()


def _models_try(args) -> int:
    from .tryout import find, try_model

    if not args.version:
        raise EngineError("give a number from `chikaku models discover`, or a weights file")
    found = find(args.version, args.folders)
    lib = _open_library(args)
    print(f"trying {found.title} ({found.pretrained}) from {_shown(found.path)}", file=sys.stderr)
    with _embedding_bar(quiet=args.json) as progress:
        trial = try_model(lib, found, progress=progress)
    if args.json:
        print(json.dumps({"version": trial.version, "previous": trial.previous,
                          "photos": trial.photos,
                          "before": trial.before and dict(trial.before),
                          "after": trial.after and dict(trial.after),
                          "better": trial.better, "verdict": trial.verdict,
                          "model": found.as_dict()}, indent=2))
        return 0
    print(f"active model: {trial.version} (was {trial.previous})")
    if trial.before and trial.after:
        print(_recall_table(trial.before, trial.after))
    print(trial.verdict)
    if trial.version != trial.previous:
        print(f"to go back: chikaku models activate {trial.previous}")
    return 0


def cmd_models(args) -> int:
    if args.action == "discover":
        return _models_discover(args)
    if args.action == "try":
        return _models_try(args)
    lib = _open_library(args)
    if args.action in ("activate", "delete") and not args.version:
        raise EngineError(f"give the version to {args.action} (see `chikaku models`)")
    if args.action == "activate":
        lib.activate_model(args.version)
        print(f"active model: {args.version}")
        return 0
    if args.action == "add-clip":
        if not args.weights:
            raise EngineError("give the CLIP weights file with --weights FILE")
        version = lib.add_model({"family": "openclip", "arch": args.arch,
                                 "weights": args.weights})
        print(f"active model: {version}")
        return 0
    if args.action == "upgrade":
        return _models_upgrade(args, lib)
    if args.action == "back":
        previous = lib.previous_model()
        if previous is None:
            raise EngineError("the active model was not trained from another model here")
        lib.activate_model(previous)
        print(f"active model: {previous}")
        return 0
    if args.action == "delete":
        lib.delete_model(args.version)
        print(f"deleted model {args.version}")
        return 0
    models = lib.models()
    if args.json:
        print(json.dumps([{"version": m.version, "family": m.family, "parent": m.parent,
                           "active": m.active, "created_at": m.created_at.isoformat(),
                           "info": m.info} for m in models], indent=2))
        return 0
    for m in models:
        after = m.info.get("after", {})
        quality = f"held-out t2i R@10 {after['t2i_r10']:.1f}" if "t2i_r10" in after else ""
        print(f"{'*' if m.active else ' '} {m.version:<24} {m.family:<8} "
              f"{m.created_at:%Y-%m-%d %H:%M}  {quality}")
    if upgrade := lib.upgrade_available():
        print(f"a better base model is available: {upgrade}; chikaku models upgrade switches to "
              "it (the current model is kept: chikaku models back returns to it)")
    return 0


def _models_upgrade(args, lib) -> int:

    before = lib.active_model_record().version
    if not args.json:
        what = lib.upgrade_available() if args.tower is None else f"image tower {args.tower}"
        print(f"upgrading {before}: {what or 'nothing to change'}", file=sys.stderr)
        print("re-embedding the library's photos with the new model; search keeps the current "
              "vectors until it is done", file=sys.stderr)
    with _embedding_bar(quiet=args.json) as progress:
        version = lib.upgrade(args.tower, progress=progress)
    if args.json:
        print(json.dumps({"version": version or before, "previous": before,
                          "changed": version is not None}, indent=2))
    elif version is None:
        print(f"the active model {before} is already the current bundled model; nothing to do")
    else:
        print(f"active model: {version} (was {before})")
        print(f"to go back (no re-embedding: its vectors are kept): chikaku models back, or "
              f"chikaku models activate {before}")
    return 0


def cmd_folders(args) -> int:
    from pathlib import Path

    lib = _open_library(args)
    if args.action != "list" and not args.paths:
        raise EngineError(f"give the folders to {args.action} (see `chikaku folders`)")
    if args.action == "list" and args.paths:
        raise EngineError("list takes no folders: did you mean `chikaku folders remove PATH`?")
    for path in args.paths:
        if args.action == "remove":
            n = lib.remove_folder(path)
            print(f"removed {_shown(path)} from the library: {n} photos left it with their "
                  "captions and vectors (the files on disk are not touched)")
        else:
            lib.set_folder_paused(path, args.action == "pause")
            print(f"{args.action}d {_shown(path)}")
    if args.action != "list":
        return 0
    paused = set(lib.paused_folders())
    rows = [{"path": f, "paused": f in paused, "present": Path(f).is_dir()} for f in lib.folders()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no folders yet (chikaku index PATH)")
    for r in rows:
        notes = [n for n, on in (("paused", r["paused"]), ("not found", not r["present"])) if on]
        print(_shown(r["path"]) + (f"  ({', '.join(notes)})" if notes else ""))
    return 0


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def cmd_watch(args) -> int:
    import signal
    import time

    from .watching.watcher import Watcher, describe

    def show(event) -> None:
        if event.kind == "indexed":
            print(f"{datetime.now():%H:%M:%S}  {_shown(describe(event))}", flush=True)
        elif event.kind != "indexing":
            print(f"chikaku: {_shown(describe(event))}", file=sys.stderr, flush=True)

    lib = _open_library(args)
    if not args.paths and not lib.folders():
        raise EngineError("the library has no folders yet: give a folder to watch "
                          "(chikaku watch PATH)")
    watcher = Watcher(lib, args.paths, on_event=show, polling=True if args.polling else None)
    watcher.start()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop: as Ctrl+C
    try:
        while watcher.running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("chikaku: stopping (photos indexed so far are kept)", file=sys.stderr)
    finally:
        watcher.stop()
        signal.signal(signal.SIGTERM, previous)
    return 0


def cmd_cluster(args) -> int:
    return run_step(args, _open_library, _shown)


def cmd_names(args) -> int:
    return run_names(args, _open_library, _shown)


def cmd_feedback(args) -> int:
    return run_feedback(args, _open_library, _shown)


COMMANDS = {"index": cmd_index, "search": cmd_search, "status": cmd_status, "eval": cmd_eval,
            "watch": cmd_watch, "folders": cmd_folders,
            "captions": cmd_captions, "train": cmd_train, "models": cmd_models,
            "names": cmd_names, "cluster": cmd_cluster, "feedback": cmd_feedback}


def _standard_streams() -> None:
    """Standard output carries results only. With standard error closed, Python has no
    sys.stderr, and print(file=sys.stderr) would print progress into standard output; and the
    next file opened (the catalog) would get descriptor 2, where C libraries write their warnings.
    Closed standard descriptors are pointed at the null device instead."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115


def _not_utf8(argv: list[str]) -> str | None:
    """A message for the first argument holding bytes that are not UTF-8 (Python carries them as
    lone surrogates), or None."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return (f"the argument '{_shown(arg)}' is not valid UTF-8 text: Chikaku takes names "
                    "and queries as UTF-8; rename the file or folder, or type the text again")
    return None


def main(argv: list[str] | None = None) -> int:
    _standard_streams()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if problem := _not_utf8(argv):
        print(f"chikaku: {problem}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    if getattr(args, "top", 1) is not None and getattr(args, "top", 1) < 1:
        parser.error("-k/--top must be at least 1")
    try:
        return COMMANDS[args.command](args)
    except EngineError as e:
        print("chikaku: " + "\n".join(map(_shown, str(e).split("\n"))), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: what was finished is kept; run the same command to go on",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
