"""Settings as frozen dataclasses. Built from dicts or the environment at the edges only."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp", ".heic", ".heif"}
)

# Folder and file names that are never photos of the person's life.
JUNK_NAMES = frozenset({"@eaDir", ".thumbnails", "$RECYCLE.BIN", "System Volume Information",
                        "lost+found", "Thumbs.db", ".DS_Store"})

LIBRARY_ENV = "CHIKAKU_LIBRARY"
# A SQLAlchemy URL for the catalog on a database server (default: SQLite in the library).
DATABASE_ENV = "CHIKAKU_DATABASE_URL"


def default_library_dir() -> Path:
    """Where the library lives: $CHIKAKU_LIBRARY, else the platform's user data folder."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("chikaku", appauthor=False)) / "library"


@dataclass(frozen=True)
class IndexingConfig:
    batch_size: int = 32
    decode_workers: int = 0  # 0: one per core
    max_pixels: int = 120_000_000  # images above this (after JPEG draft reduction) are skipped
    commit_every: int = 64  # photos per catalog transaction: an interrupted run keeps these
    exclude_globs: tuple[str, ...] = ()


@dataclass(frozen=True)
class LibraryConfig:
    root: Path
    database_url: str | None = None  # default: SQLite in root/catalog.db
    device: str = "auto"  # auto | cpu | cuda
    indexing: IndexingConfig = field(default_factory=IndexingConfig)

    @property
    def catalog_url(self) -> str:
        return self.database_url or f"sqlite:///{self.root / 'catalog.db'}"

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"


@dataclass(frozen=True)
class TrainOptions:
    steps: int = 200
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 0.05
    seed: int = 0
    holdout: float = 0.1
    eval_every: int = 10
    patience: int = 4  # evaluations without improvement before stopping early
    flip: bool = True
    activate: str = "if_better"  # if_better | always | never
    family: str | None = None  # None: refine the active model; "scratch" / "bundled": new model
    checkpoint_every: int = 50
    resume: bool = True
    ema: float = 0.9  # evaluate and keep a running average of the weights (0: the last ones)
    crops: int = 0  # random crops of each training photo added as cached views (with flips)
    unlock_image: int = 0  # the image tower's last N blocks are trained too
    unlock_text: int = 0  # the text tower's last N blocks (transformer layers) are trained too
    wise_alpha: float = 1.0  # WiSE-FT: 1 keeps the fine-tuned weights, 0 the original ones
