"""Named things: a name for some photos (a person, a pet, "the red car") that works as a query term.

    @mia                        the photos most like the photos named "mia"
    @mia + "red slide"          ... combined with words, as any two terms are
    @mia + 0.5*beach.jpg -snow  ... with an image, a weight, an exclusion

The photos are the truth, kept in the catalog; the name's vector is derived from them for each
model version: the mean of their unit vectors, made unit-length again (the photos' centre in the
representation space). It is stored with the basis it was made from and made again when that
changes: a photo named or gone, a photo embedded again, another model active. Names are compared
case-folded ("Mia" and "mia" are one name) and kept as the person typed them.

A name is one word as a query sees it: letters, digits, ``_``, ``-`` and ``'``
(``red-car``, ``grandma's_garden``), at most MAX_LENGTH characters. Photos deleted from the
library leave the name with the rest; a name whose photos have all left says so when used.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .catalog import Catalog
from .catalog_names import NameCatalog, NameRow
from .errors import LibraryError, QueryError

if TYPE_CHECKING:
    from .models.base import DualEncoder

MAX_LENGTH = 40
BEST_PHOTOS = (5, 20)  # how many photos make a good name: shown as advice, never enforced
NAME = re.compile(r"[^\W_][\w'-]*")  # \w: letters and digits of any script, and "_"
NAME_TERM = re.compile(r"@(" + NAME.pattern + r")")


@dataclass(frozen=True)
class NamedThing:
    """A name as the app and the command line show it."""

    name: str  # as typed
    photos: int  # how many photos it names (photos still in the library)
    in_captions: bool  # the name is a caption of its photos (the next fine-tune learns it)
    photo_ids: tuple[int, ...] = ()


def clean_name(text: str) -> tuple[str, str]:
    """(the name as typed, its case-folded key), or a LibraryError saying what a name can be.
    A leading ``@`` is taken off: ``@mia`` names "mia"."""
    name = text.strip() if isinstance(text, str) else ""
    name = name[1:] if name.startswith("@") else name
    if not name:
        raise LibraryError("the name is empty: type a word such as mia or red-car")
    if len(name) > MAX_LENGTH:
        raise LibraryError(f"the name is too long ({len(name)} characters; at most "
                           f"{MAX_LENGTH})")
    if not NAME.fullmatch(name):
        hint = re.sub(r"[\s]+", "-", name)
        hint = "" if not NAME.fullmatch(hint) else f" (for instance @{hint})"
        raise LibraryError(f"@{name} cannot be a name: a name is one word of letters and digits, "
                           f"with - _ or ' inside it but no spaces{hint}, so that a query can "
                           "tell where it ends")
    return name, name.casefold()


def listing(names: list[NameRow]) -> str:
    """The known names for a message: "@mia, @rex" (or that there are none)."""
    if not names:
        return ("this library has no names yet (select some photos and name them: `chikaku "
                "names add NAME PHOTO...`)")
    return "the names are " + ", ".join(f"@{n.name}" for n in names)


class Names:
    """The library's names: their photos in the catalog, their vectors per model version."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.table = NameCatalog(catalog)

    # -- reading --------------------------------------------------------------------------------
    def all(self) -> list[NamedThing]:
        return [self._thing(r) for r in self.table.all()]

    def get(self, name: str) -> NamedThing | None:
        row = self.table.find(clean_name(name)[1])
        return None if row is None else self._thing(row)

    def _thing(self, row: NameRow) -> NamedThing:
        ids = self._present(row)
        return NamedThing(row.name, len(ids), row.in_captions, tuple(ids))

    def _present(self, row: NameRow) -> list[int]:
        """The photos of a name that are still in the library (searchable or missing)."""
        photos = self.catalog.photos_by_id(list(row.photo_ids))
        return [i for i in row.photo_ids if i in photos and photos[i].status != "skipped"]

    def _named(self, name: str) -> NameRow:
        """The row of a name a query or a command gave, or a message listing the names."""
        try:
            key = clean_name(name)[1]
        except LibraryError as e:
            raise QueryError(str(e)) from e
        row = self.table.find(key)
        if row is None:
            raise QueryError(f"no name @{name} in this library: {listing(self.table.all())} "
                             "(to search for the word itself, put it in quotes)")
        return row

    # -- changing -------------------------------------------------------------------------------
    def add(self, name: str, photo_ids: list[int], in_captions: bool = False) -> NamedThing:
        """Name these photos (or add them to a name that exists). Every photo must be in the
        library with a vector; otherwise nothing is changed and the message names the others."""
        shown, key = clean_name(name)
        ids = list(dict.fromkeys(int(i) for i in photo_ids))
        if not ids:
            raise LibraryError(f"give at least one photo to name @{shown} (best: "
                               f"{BEST_PHOTOS[0]} to {BEST_PHOTOS[1]} photos of it)")
        photos = self.catalog.photos_by_id(ids)
        absent = [i for i in ids if i not in photos]
        unusable = [i for i in ids if i in photos and photos[i].status != "ok"]
        if absent or unusable:
            parts = []
            if absent:
                parts.append(f"{len(absent)} not in the library (ids "
                             f"{', '.join(map(str, absent[:10]))})")
            if unusable:
                parts.append(f"{len(unusable)} not searchable ("
                             + ", ".join(photos[i].path for i in unusable[:5]) + ")")
            raise LibraryError(f"@{shown} was not saved: of the {len(ids)} photos, "
                               + " and ".join(parts) + "; name only photos of the library")
        existing = self.table.find(key)
        if existing is not None:
            shown = existing.name  # more photos for a name keep its spelling
        return self._thing(self.table.add(shown, key, ids, in_captions))

    def rename(self, old: str, new: str) -> NamedThing:
        row = self._existing(old)
        shown, key = clean_name(new)
        renamed = self.table.rename(row.key, shown, key)
        if renamed is None:
            raise LibraryError(f"no name @{old} in this library: {listing(self.table.all())}")
        return self._thing(renamed)

    def delete(self, name: str) -> NamedThing:
        row = self._existing(name)
        if self.table.delete(row.key) is None:
            raise LibraryError(f"no name @{name} in this library: {listing(self.table.all())}")
        return self._thing(row)

    def _existing(self, name: str) -> NameRow:
        row = self.table.find(clean_name(name)[1])
        if row is None:
            raise LibraryError(f"no name @{name.lstrip('@')} in this library: "
                               f"{listing(self.table.all())}")
        return row

    # -- vectors --------------------------------------------------------------------------------
    def vector(self, name: str, model: DualEncoder, store: bool = True) -> np.ndarray:
        """The name's vector for this model version: the stored one while its basis holds, else
        made again from its photos' vectors (and stored, unless ``store`` is False)."""
        row = self._named(name)
        ids = self._present(row)
        if not ids:
            raise QueryError(f"@{row.name} names no photo of the library any more (its photos "
                             "were deleted): name some photos again, or delete the name")
        basis = self._basis(ids)
        stored = self.table.stored_vector(row.id, model.version)
        if stored is not None and stored[0] == basis and stored[2].shape == (model.dim,):
            return stored[2]
        found, vecs = self.catalog.vectors_by_id(model.version, ids, model.dim)
        if len(found) == 0:
            raise QueryError(f"the photos of @{row.name} have no vectors of the model "
                             f"{model.version} yet: index the library (chikaku index) first")
        vec = centre(vecs)
        if store:
            with suppress(LibraryError):  # a read-only library: used, not kept
                self.table.store_vector(row.id, model.version, basis, len(found), vec)
        return vec

    def refresh(self, model: DualEncoder) -> int:
        """Make every name's vector for this model version (after a switch to it); returns how
        many names have one. A name left with no photo is skipped, not an error."""
        made = 0
        for row in self.table.all():
            try:
                self.vector(row.name, model)
                made += 1
            except QueryError:
                continue
        return made

    def stored_versions(self, name: str) -> list[str]:
        """The model versions this name has a stored vector for."""
        return self.table.vector_versions(self._existing(name).id)

    def _basis(self, ids: list[int]) -> str:
        """What a stored vector must have been made from to be current: these photos, and the
        catalog's vectors as they are now (the generation changes whenever any vector does)."""
        text = f"{self.catalog.generation()}:" + ",".join(map(str, sorted(ids)))
        return hashlib.sha256(text.encode()).hexdigest()[:40]


def centre(vecs: np.ndarray) -> np.ndarray:
    """The unit-length mean of unit vectors: the direction they share."""
    v = np.asarray(vecs, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    mean = v.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-9:  # photos pointing every way at once: no shared direction to search for
        raise QueryError("the photos of this name have nothing in common the model can see")
    return (mean / norm).astype(np.float32)
