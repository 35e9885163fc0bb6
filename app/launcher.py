"""The `chikaku` command: with no arguments it opens the app, otherwise it is the CLI."""

from __future__ import annotations

import importlib.util
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv and importlib.util.find_spec("app.main") is not None:
        from app.main import run

        return run()
    from engine.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
