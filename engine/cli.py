"""The command line: ``chikaku index | search | status | eval``."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from datetime import datetime

from . import __version__
from .config import LIBRARY_ENV
from .errors import EngineError

EPILOG = f"""\
The library (catalog, index, models) lives in your user data folder, or in --library DIR,
or in ${LIBRARY_ENV}.

examples:
  chikaku index ~/Pictures
  chikaku search "a dog running through snow"
  chikaku search --image holiday.jpg
  chikaku search '"beach" + 0.5*holiday.jpg - "people"'
  chikaku status
  chikaku eval path/to/captioned-folder
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chikaku", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Find your photos by meaning, on your own disk, offline.")
    p.add_argument("--version", action="version", version=f"chikaku {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--library", metavar="DIR", help="library folder (default: "
                        f"${LIBRARY_ENV} or your user data folder)")
    common.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where the model runs (default: auto)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    ix = sub.add_parser("index", parents=[common], help="add folders of photos and index them",
                        description="Index photo folders. Unchanged photos are not read again; "
                        "moved photos keep their vectors and captions; deleted ones leave.")
    ix.add_argument("paths", nargs="*", metavar="PATH",
                    help="folders to index (default: every folder already in the library)")
    ix.add_argument("--quiet", action="store_true", help="no progress bar")

    se = sub.add_parser("search", parents=[common], help="find photos by text or by image",
                        description="Search by text, by an image file, or both combined: "
                        "'\"beach\" + 0.5*photo.jpg - \"people\"'.")
    se.add_argument("query", nargs="?", help="what the photos show, or a combined query")
    se.add_argument("--image", metavar="FILE", help="find photos like this image file")
    se.add_argument("-k", "--top", type=int, default=10, metavar="K",
                    help="number of results (default 10)")
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
    return p


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d")
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from e


def _date_end(text: str) -> datetime:
    return _date(text).replace(hour=23, minute=59, second=59)


def _open_library(args):
    from .library import Library

    return Library.open(args.library, device=args.device)


def cmd_index(args) -> int:
    from tqdm import tqdm

    lib = _open_library(args)
    bar = None

    def progress(p) -> None:
        nonlocal bar
        if args.quiet or p.stage != "indexing":
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
    if report.skipped:
        print("skipped:")
        for path, reason in sorted(report.skipped.items()):
            print(f"  {path}: {reason}")
    return 0


def cmd_search(args) -> int:
    if not args.query and not args.image:
        raise EngineError("give a query, or --image FILE")
    lib = _open_library(args)
    hits = lib.search(args.query, k=args.top, image=args.image, folder=args.folder,
                      date_from=args.date_from, date_to=args.date_to)
    if args.json:
        print(json.dumps([{"rank": i + 1, "id": h.photo_id, "path": h.path,
                           "score": round(h.score, 4),
                           "date": h.date.isoformat() if h.date else None}
                          for i, h in enumerate(hits)], indent=2))
        return 0
    if not hits:
        print("no photos match the filters")
    for i, h in enumerate(hits):
        print(f"{i + 1:>3}  {h.score:6.3f}  {h.path}")
    return 0


def cmd_status(args) -> int:
    lib = _open_library(args)
    st = lib.status()
    if args.json:
        print(json.dumps({"library": st.root, "photos": st.photos, "embedded": st.embedded,
                          "folders": st.folders, "model": st.model_version,
                          "captions": st.captions,
                          "skipped": [{"path": p, "reason": r} for p, r in st.skipped]},
                         indent=2))
        return 0
    print(f"library:  {st.root}")
    print(f"photos:   {st.photos} searchable ({st.embedded} embedded by the active model)")
    print(f"model:    {st.model_version}")
    print(f"captions: {st.captions}")
    print("folders:  " + (", ".join(st.folders) if st.folders else "none yet (chikaku index PATH)"))
    print(f"skipped:  {len(st.skipped)}")
    for path, reason in st.skipped:
        print(f"  {path}: {reason}")
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
    print("               R@1     R@5    R@10")
    print(f"text->image {res['t2i_r1']:7.1f} {res['t2i_r5']:7.1f} {res['t2i_r10']:7.1f}")
    print(f"image->text {res['i2t_r1']:7.1f} {res['i2t_r5']:7.1f} {res['i2t_r10']:7.1f}")
    return 0


COMMANDS = {"index": cmd_index, "search": cmd_search, "status": cmd_status, "eval": cmd_eval}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    if getattr(args, "top", 1) is not None and getattr(args, "top", 1) < 1:
        parser.error("-k/--top must be at least 1")
    try:
        return COMMANDS[args.command](args)
    except EngineError as e:
        print(f"chikaku: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
