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

# Fine-tuning needs at least this many captioned photos (the app says so before a run starts).
MIN_PHOTOS = 8

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


def _cli(help: str, **more) -> dict:
    """Metadata that makes a training option a command-line flag (`chikaku train --name`)."""
    return {"help": help, **more}


@dataclass(frozen=True)
class TrainOptions:
    """Fine-tuning options. Those with help metadata are also `chikaku train` flags (the command
    line derives them from here, so defaults and help are written once)."""

    steps: int = field(default=200, metadata=_cli(
        "training steps (at most: see --epochs)"))
    epochs: float = field(default=12.0, metadata=_cli(
        "at most this many passes over the training photos: a few captioned photos are learnt "
        "in a few steps, and more steps only overfit them", metavar="E"))
    batch_size: int = field(default=256, metadata=_cli("photos per step"))
    lr: float = field(default=5e-4, metadata=_cli("learning rate"))
    weight_decay: float = 0.05
    seed: int = field(default=0, metadata=_cli("any whole number from 0 to 4294967295"))
    holdout: float = field(default=0.1, metadata=_cli(
        "share of captioned photos set aside: half chooses the state kept, half judges it"))
    eval_every: int = 10
    patience: int = 4  # evaluations without improvement before stopping early
    flip: bool = True
    activate: str = field(default="if_better", metadata=_cli(
        "if_better: switch only when judged better; always; never (only save)",
        choices=("if_better", "always", "never")))
    family: str | None = field(default=None, metadata=_cli(
        "train a new model of this family (default: refine the active one)",
        choices=("bundled", "scratch"), type=str))
    checkpoint_every: int = 50
    resume: bool = True
    ema: float = field(default=0.9, metadata=_cli(
        "decay of the running weight average that is evaluated and kept (0 keeps the last "
        "step's weights)", metavar="D"))
    crops: int = field(default=0, metadata=_cli(
        "add N random crops of each photo as training views", metavar="N"))
    unlock_image: int = field(default=0, metadata=_cli(
        "also train the last N blocks of the image tower", metavar="N"))
    unlock_text: int = field(default=0, metadata=_cli(
        "also train the last N layers of the text tower", metavar="N"))
    wise_alpha: float = field(default=1.0, metadata=_cli(
        "WiSE-FT: keep A of the fine-tuning (0..1)", metavar="A"))
    features: str | None = field(default=None, metadata=_cli(
        "read the towers' features from a folder `chikaku cluster features` made (DIR: its "
        "job folder) instead of computing them here", metavar="DIR", type=str))
