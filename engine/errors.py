"""The engine's exceptions. Every message is written for the person using Chikaku."""


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class Cancelled(EngineError):
    """A job was cancelled between two steps; everything finished before it is kept."""


class BadImage(EngineError):
    """A file could not be used as a photo. The message says why."""


class ModelLoadError(EngineError):
    """A model or checkpoint could not be loaded."""


class QueryError(EngineError):
    """A search query could not be understood."""


class LibraryError(EngineError):
    """The library (catalog, index) is missing, locked, or from a newer Chikaku."""


class DatasetError(EngineError):
    """A captioned data set for evaluation or import could not be read."""
