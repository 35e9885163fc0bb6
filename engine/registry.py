"""A library's model versions: their catalog rows, checkpoint folders and the active one.

Every trained version is a checkpoint folder ``models/<version>/`` (safetensors + JSON config,
named by ``index.file_name``) and a row in the catalog; a built-in model (the bundled zero-shot
one, CLIP weights named by a config) has a row and no folder. Rows store their folder relative to
the library folder, so a library moved or copied elsewhere keeps finding its own models.

The registry changes rows and folders; the caller holds the library's writer lock while it does.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .catalog import Catalog, ModelRecord
from .config import TrainOptions
from .errors import LibraryError
from .index import file_name
from .models import create_model, load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from .models.base import DualEncoder


@dataclass
class ModelInfo:
    version: str
    family: str
    parent: str | None
    active: bool
    created_at: datetime
    info: dict
    config: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        """What the version is, in words a person reads (never a hash): "Base model", "Tuned on
        782 of your photos · 30 Nov 2026", "CLIP ViT-B-32 (openai)"."""
        photos = self.info.get("photos") if isinstance(self.info, dict) else None
        if photos:
            when = (f" · {self.created_at.day} {self.created_at:%b %Y}" if self.created_at
                    else "")
            return f"Tuned on {photos:,} of your photos{when}"
        if self.family == "openclip":
            arch, tag = self.config.get("arch", "CLIP"), self.config.get("pretrained")
            return f"CLIP {arch}" + (f" ({tag})" if tag else "")
        if self.family == "bundled":
            from .models.recipe import RECIPE, recipe_of

            better = "lite1" in str(self.config.get("image_tower", ""))
            # an upgraded library lists both base models: the one made before the recipe says so
            earlier = recipe_of(self.config) != RECIPE
            return "Base model" + (" (better image model)" if better else "") + (
                " (earlier zero-shot recipe)" if earlier else "")
        return f"Untrained {self.family} model"



def _config(text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class ModelRegistry:
    def __init__(self, catalog: Catalog, root: Path, models_dir: Path, index_dir: Path) -> None:
        self.catalog = catalog
        self.root = Path(root)
        self.models_dir = Path(models_dir)
        self.index_dir = Path(index_dir)  # a deleted version's index files go too

    # -- reading --------------------------------------------------------------------------------
    def records(self) -> list[ModelInfo]:
        """Every version, oldest first."""
        return [ModelInfo(r.version, r.family, r.parent, r.active, r.created_at, r.info,
                          _config(r.config_json)) for r in self.catalog.model_rows()]

    def get(self, version: str) -> ModelRecord | None:
        """A version's row, its ``path`` the checkpoint folder in this library."""
        rec = self.catalog.model_row(version)
        return None if rec is None else self.located(rec)

    def active(self) -> ModelRecord:
        """The active version's row, its ``path`` the checkpoint folder in this library."""
        rec = self.catalog.active_model_row()
        if rec is None:
            raise LibraryError("the library has no active model")
        return self.located(rec)

    def active_version(self) -> str:
        """The active version's name: ``active().version`` in one plain read (every search asks
        it, to answer with the version that is active)."""
        version = self.catalog.active_version()
        if version is None:
            raise LibraryError("the library has no active model")
        return version

    def has_active(self) -> bool:
        return self.catalog.active_model_row() is not None

    def previous(self, version: str) -> str | None:
        """The version this one was trained from (the one active before it), if it still exists."""
        rec = self.catalog.model_row(version)
        if rec is not None and rec.parent and self.catalog.model_row(rec.parent) is not None:
            return rec.parent
        return None

    def checkpoint_folder(self, version: str) -> Path:
        """Where a new version's checkpoint is saved."""
        return self.models_dir / file_name(version)

    def checkpoint_dir(self, stored: str | None) -> Path | None:
        """Where a row's checkpoint folder is. A relative row is inside this library; an absolute
        one (written before rows were relative) is read as the folder of that name in this
        library's models/ when there is one, so a moved or copied library uses its own."""
        if not stored:
            return None
        path = Path(stored)
        if not path.is_absolute():
            return self.root / path
        own = self.models_dir / path.name
        return own if own.is_dir() else path

    def located(self, rec: ModelRecord) -> ModelRecord:
        """A row read out of its session, its ``path`` made the checkpoint folder here."""
        if rec.path:
            rec.path = str(self.checkpoint_dir(rec.path))
        return rec

    def _stored_path(self, folder: Path | None) -> str | None:
        if folder is None:
            return None
        full, root = Path(folder).absolute(), self.root.absolute()
        return full.relative_to(root).as_posix() if full.is_relative_to(root) else str(full)

    # -- models ---------------------------------------------------------------------------------
    def load(self, rec: ModelRecord, device: str) -> DualEncoder:
        """The model a located row names: its checkpoint, or its config for a built-in one."""
        if rec.path:
            return load_checkpoint(Path(rec.path), device=device)
        return create_model(json.loads(rec.config_json), device=device)

    def derive(self, parent: ModelRecord, opt: TrainOptions, device: str) -> DualEncoder:
        """A trainable copy of a located parent row; its towers' last blocks unlocked when
        asked."""
        unlock = {k: getattr(opt, k) for k in ("unlock_image", "unlock_text") if getattr(opt, k)}
        if not unlock:
            return self.load(parent, device)
        if parent.family not in ("bundled", "openclip"):
            raise LibraryError(f"a {parent.family} model trains its whole towers already; "
                               "unlocking blocks applies to the bundled and CLIP models")
        model = create_model({**json.loads(parent.config_json), **unlock}, device=device)
        if parent.path:
            from safetensors.torch import load_file

            model.load_state_dict(load_file(str(Path(parent.path) / "weights.safetensors")),
                                  strict=False)
        return model

    # -- writing (under the library's writer lock) ----------------------------------------------
    def register(self, model: DualEncoder, folder: Path | None = None, info: dict | None = None,
                 active: bool = False) -> None:
        """Record a version (kept as it is when already there); ``active``: make it the active
        one in the same transaction."""
        self.catalog.add_model_row(model.version, family=model.family, parent=model.parent,
                                   path=self._stored_path(folder), config=model.config(),
                                   info=info or {}, active=active)

    def save(self, model: DualEncoder, info: dict) -> Path:
        """Save a trained version's checkpoint and record it (not active); its folder."""
        folder = save_checkpoint(model, self.checkpoint_folder(model.version), info)
        self.register(model, folder, info)
        return folder

    def set_active(self, version: str) -> None:
        self.catalog.set_active_model(version)

    def delete(self, version: str) -> None:
        """A version that is not active: its row, its vectors, its checkpoint folder (only one
        inside this library's models/) and its index files."""
        rec = self.get(version)
        if rec is None:
            raise LibraryError(f"no model {version!r} in this library")
        if rec.active:
            raise LibraryError("the active model cannot be deleted; activate another one first")
        self.catalog.delete_model_row(version)
        path = Path(rec.path) if rec.path else None
        if path and path.is_dir() and path.parent == self.models_dir:
            shutil.rmtree(path, ignore_errors=True)
        for f in self.index_dir.glob(file_name(version) + ".*"):
            f.unlink(missing_ok=True)
