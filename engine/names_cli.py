"""``chikaku names``: name photos, list, rename and delete names (engine.names).

    chikaku names add mia photos/mia1.jpg photos/mia2.jpg 42 43    by path or by photo id
    chikaku names add mia --caption ...                            ... and caption them "mia"
    chikaku names list
    chikaku names rename mia Mia-Rose
    chikaku names delete mia
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .errors import EngineError

ACTIONS = ("list", "add", "rename", "delete")


def add_names_command(sub, common) -> None:
    na = sub.add_parser(
        "names", parents=[common], help="name photos (a person, a pet) to search for @name",
        description="Give a name to some photos of one thing (a person, a pet, the red car: "
        "best 5 to 20 photos); then `chikaku search @NAME` finds "
        "photos like them, and the name combines with words and images: "
        "'@mia + \"red slide\"'. A name is one word (letters, digits, - _ '), any case.")
    na.add_argument("action", nargs="?", default="list", choices=ACTIONS,
                    help="add NAME PHOTO...: name these photos (by path or photo id; a name "
                    "that exists gets them too); rename OLD NEW; delete NAME")
    na.add_argument("items", nargs="*", metavar="ARG", help="the name, then photos (add) or the "
                    "new name (rename)")
    na.add_argument("--caption", action="store_true", help="add: also add the name to these "
                    "photos' captions, so that the next fine-tune learns the word itself")
    na.add_argument("--json", action="store_true", help="print JSON")


def photo_ids(lib, items: list[str]) -> list[int]:
    """Photo ids from paths or ids as typed; every one must be a photo of the library."""
    ids, unknown = [], []
    for item in items:
        photo = lib.photo_by_path(item) if Path(item).expanduser().exists() else None
        if photo is None and item.isdigit() and len(item) < 19:
            photo = lib.photo(int(item))
        if photo is None:
            unknown.append(item)
        else:
            ids.append(photo.id)
    if unknown:
        raise EngineError(f"{len(unknown)} of the photos are not in the library: "
                          + ", ".join(unknown[:10]) + " (give paths of indexed photos or their "
                          "ids, as `chikaku search --json` prints them); nothing was named")
    return ids


def run_names(args, open_library, shown) -> int:
    """The names command; ``open_library(args)`` and ``shown(text)`` come from engine.cli."""
    from .names import BEST_PHOTOS  # here: the command line starts without the catalog's imports

    n = len(args.items)
    wanted = {"list": (0, 0), "add": (1, None), "rename": (2, 2), "delete": (1, 1)}[args.action]
    if n < wanted[0] or (wanted[1] is not None and n > wanted[1]):
        usage = {"list": "chikaku names list", "add": "chikaku names add NAME PHOTO...",
                 "rename": "chikaku names rename OLD NEW", "delete": "chikaku names delete NAME"}
        raise EngineError(f"usage: {usage[args.action]}")
    lib = open_library(args)
    if args.action == "add":
        ids = photo_ids(lib, args.items[1:])
        named = lib.name_photos(args.items[0], ids, add_to_captions=args.caption)
        print(f"@{shown(named.name)} names {named.photos} photos"
              + (" (and is in their captions)" if named.in_captions else ""))
        if named.photos < BEST_PHOTOS[0]:
            print(f"tip: a name works best with {BEST_PHOTOS[0]} to {BEST_PHOTOS[1]} photos of "
                  "its subject, in different places and light", file=sys.stderr)
        return 0
    if args.action == "rename":
        named = lib.rename_name(args.items[0], args.items[1])
        print(f"renamed @{shown(args.items[0].lstrip('@'))} to @{shown(named.name)}")
        return 0
    if args.action == "delete":
        named = lib.delete_name(args.items[0])
        print(f"deleted @{shown(named.name)} (its {named.photos} photos stay in the library"
              + ("; the captions it added were removed)" if named.in_captions else ")"))
        return 0
    things = lib.named_things()
    if args.json:
        print(json.dumps([{"name": t.name, "photos": t.photos, "in_captions": t.in_captions,
                           "photo_ids": list(t.photo_ids)} for t in things], indent=2))
        return 0
    if not things:
        print("no names yet (chikaku names add NAME PHOTO...)")
    for t in things:
        print(f"@{shown(t.name)}  {t.photos} photos" + ("  (in captions)" if t.in_captions
                                                         else ""))
    return 0
