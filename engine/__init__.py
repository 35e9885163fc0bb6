"""Chikaku's engine: catalog, models, index and search, with no user interface."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chikaku")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
