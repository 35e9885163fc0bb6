"""The app's settings: a small versioned JSON file in the user's config folder.

A settings file that cannot be read, is damaged, or was written by a newer Chikaku never stops
the app: it starts from the defaults and logs a warning (and the file is only replaced when the
person changes a setting). Window geometry lives beside it in ``window.ini`` (QSettings).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from engine.readlimit import MB, read_text

log = logging.getLogger(__name__)

SETTINGS_VERSION = 1
CONFIG_ENV = "CHIKAKU_CONFIG_DIR"
DEVICES = ("auto", "cpu", "cuda")
SETTINGS_LIMIT = 1 * MB  # a few hundred bytes in use; a bigger file is not ours


@dataclass
class Settings:
    library: str | None = None  # None: $CHIKAKU_LIBRARY, else the user data folder
    device: str = "auto"  # auto | cpu | cuda
    exclude_patterns: list[str] = field(default_factory=list)  # file and folder name globs
    results: int = 1000  # how many more photos "Show more" brings (a search: its likely matches)
    train_steps: int = 200
    watch: bool = True  # keep the library current with its folders while the app is open
    show_names: bool = False  # file names under the thumbnails
    thumb_size: int = 160  # the thumbnails' side in logical pixels (one of app.thumbs.ICON_SIDES)


def config_dir() -> Path:
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("chikaku", appauthor=False))


def settings_path() -> Path:
    return config_dir() / "settings.json"


def _valid(name: str, value: object) -> bool:
    if name == "library":
        return value is None or (isinstance(value, str) and bool(value.strip()))
    if name == "device":
        return value in DEVICES
    if name == "exclude_patterns":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if name in ("watch", "show_names"):
        return isinstance(value, bool)
    if name == "thumb_size":
        from .thumbs import ICON_SIDES

        return value in ICON_SIDES and not isinstance(value, bool)
    if name in ("results", "train_steps"):
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100_000
    return False


def _from_dict(data: dict, path: Path) -> Settings:
    values = {}
    for f in fields(Settings):
        if f.name not in data:
            continue
        if _valid(f.name, data[f.name]):
            values[f.name] = data[f.name]
        else:
            log.warning("ignoring the setting %r in %s: %r is not valid", f.name, path,
                        data[f.name])
    return Settings(**values)


def load_settings(path: Path | None = None) -> Settings:
    """The saved settings, or the defaults if there are none or they cannot be used."""
    path = path or settings_path()
    try:
        raw = read_text(path, SETTINGS_LIMIT)
    except FileNotFoundError:
        return Settings()
    except (OSError, UnicodeDecodeError) as e:
        log.warning("cannot read the settings file %s (%s); using the defaults", path, e)
        return Settings()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        log.warning("the settings file %s is damaged (%s); using the defaults", path, e)
        return Settings()
    if not isinstance(data, dict) or not isinstance(data.get("version"), int):
        log.warning("the settings file %s has no version; using the defaults", path)
        return Settings()
    if data["version"] > SETTINGS_VERSION:
        log.warning("the settings file %s was written by a newer Chikaku (version %s); using "
                    "the defaults", path, data["version"])
        return Settings()
    return _from_dict(data, path)


def save_settings(settings: Settings, path: Path | None = None) -> None:
    """Write the settings atomically (a temporary file, then a rename)."""
    path = path or settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"version": SETTINGS_VERSION, **asdict(settings)}, indent=2),
                   encoding="utf-8")
    os.replace(tmp, path)


def library_location(settings: Settings) -> str | None:
    """Which library to open: $CHIKAKU_LIBRARY first, then the settings (None: the default)."""
    return os.environ.get("CHIKAKU_LIBRARY") or settings.library
