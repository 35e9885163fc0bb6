"""Keeping the library current while Chikaku is closed: a login item that runs `chikaku watch`.

On Linux it is an XDG autostart entry (``$XDG_CONFIG_HOME/autostart``), which every desktop that
follows the freedesktop.org specification starts at login; on macOS a LaunchAgent and on Windows a
Startup-folder script are written the same way (those two are not exercised by the tests, which
run on Linux). The background watcher and the app can run together: one of them holds the
library's writer lock and keeps it current, the other reads.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

LABEL = "io.github.chikaku.Chikaku.watch"


def watch_command(library: str) -> list[str]:
    """The command the login item runs: the installed ``chikaku`` if there is one beside this
    Python, else this Python running the engine's command line."""
    beside = Path(sys.executable).with_name("chikaku.exe" if os.name == "nt" else "chikaku")
    found = str(beside) if beside.is_file() else shutil.which("chikaku")
    base = [found] if found else [sys.executable, "-m", "engine.cli"]
    return [*base, "watch", "--library", str(Path(library).expanduser().resolve())]


def entry_path() -> Path:
    """Where this platform keeps the login item."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    if os.name == "nt":
        appdata = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
        return (appdata / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Startup"
                / "chikaku-watch.cmd")
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "autostart" / f"{LABEL}.desktop"


def _desktop_entry(command: list[str]) -> str:
    # The Exec key's quoting rules are the shell's double quotes, which shlex.join satisfies for
    # paths without "$", "`" or a backslash; paths holding those are refused in enable().
    return ("[Desktop Entry]\nType=Application\nName=Chikaku (keeping photos current)\n"
            "Comment=Indexes new and changed photos in your Chikaku library folders\n"
            f"Exec={shlex.join(command)}\nTerminal=false\nNoDisplay=true\n"
            "X-GNOME-Autostart-enabled=true\n")


def enable(library: str) -> Path:
    """Write the login item for ``library``; returns where. An OSError says why it could not."""
    command = watch_command(library)
    path = entry_path()
    if sys.platform == "darwin":
        body = plistlib.dumps({"Label": LABEL, "ProgramArguments": command, "RunAtLoad": True,
                               "KeepAlive": False})
    elif os.name == "nt":
        body = ("@echo off\r\nstart \"\" /min " + subprocess.list2cmdline(command) + "\r\n").encode()
    else:
        if any(c in arg for arg in command for c in "$`\\\n"):
            raise OSError("the library's path holds a character a login item cannot carry "
                          "($, `, \\ or a line break): move the library to use this")
        body = _desktop_entry(command).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(body)
    os.replace(tmp, path)
    return path


def disable() -> bool:
    """Remove the login item; False if there was none."""
    try:
        entry_path().unlink()
    except FileNotFoundError:
        return False
    return True


def enabled() -> bool:
    return entry_path().is_file()


def desktop_command(path: Path) -> list[str]:
    """The command an XDG autostart entry runs (its Exec key), as a login session would."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("Exec="):
            return shlex.split(line[len("Exec="):])
    return []
