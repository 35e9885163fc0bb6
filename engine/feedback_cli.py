"""``chikaku feedback``: mark search results right or wrong for a query, for scripting and tests
(the app's marks do the same; engine.feedback).

    chikaku feedback right "dog in snow" photos/a.jpg 42    these are right for the query
    chikaku feedback wrong "dog in snow" photos/b.jpg       this one is wrong for it
    chikaku feedback clear "dog in snow" photos/a.jpg       no mark on it any more
    chikaku feedback clear "dog in snow"                    no marks for the query at all
    chikaku feedback list [--json]
"""

from __future__ import annotations

import json

from .errors import EngineError
from .names_cli import photo_ids

ACTIONS = ("list", "right", "wrong", "clear")


def add_feedback_command(sub, common) -> None:
    fb = sub.add_parser(
        "feedback", parents=[common], help="mark search results right or wrong for a query",
        description="Mark photos right or wrong for a query. The query's results re-rank at "
        "once (toward the right photos, without the wrong ones); a right mark also becomes a "
        "caption of the photo, and the next fine-tune learns from both (a wrong photo is a hard "
        "negative of the query).")
    fb.add_argument("action", nargs="?", default="list", choices=ACTIONS,
                    help="right|wrong QUERY PHOTO...; clear QUERY [PHOTO...]; list")
    fb.add_argument("items", nargs="*", metavar="ARG", help="the query, then photos (by path "
                    "or id)")
    fb.add_argument("--json", action="store_true", help="print JSON (list)")


def run_feedback(args, open_library, shown) -> int:
    """The feedback command; ``open_library(args)`` and ``shown(text)`` come from engine.cli."""
    items = args.items
    if args.action in ("right", "wrong") and len(items) < 2:
        raise EngineError(f"usage: chikaku feedback {args.action} QUERY PHOTO...")
    if args.action == "clear" and not items:
        raise EngineError("usage: chikaku feedback clear QUERY [PHOTO...]")
    if args.action == "list" and items:
        raise EngineError("usage: chikaku feedback list")
    lib = open_library(args)
    if args.action in ("right", "wrong", "clear"):
        query, ids = items[0], photo_ids(lib, items[1:])
        if args.action == "clear" and not ids:
            n = lib.feedback_clear(query)
            print(f"cleared {n} mark{'s' if n != 1 else ''} of “{shown(query)}”")
            return 0
        right = {"right": True, "wrong": False, "clear": None}[args.action]
        for pid in ids:
            lib.mark(query, pid, right)
        what = {"right": "marked right", "wrong": "marked wrong", "clear": "unmarked"}
        print(f"{what[args.action]} {len(ids)} photo{'s' if len(ids) != 1 else ''} for "
              f"“{shown(query)}”")
        return 0
    marks = lib.feedback_marks()
    if args.json:
        print(json.dumps([{"query": m.query, "photo_id": m.photo_id, "path": m.path,
                           "right": m.right} for m in marks], indent=2))
        return 0
    if not marks:
        print("no marks yet (chikaku feedback right|wrong QUERY PHOTO...)")
    for m in marks:
        print(f"{'right' if m.right else 'wrong'}  “{shown(m.query)}”  {shown(m.path)}")
    return 0
