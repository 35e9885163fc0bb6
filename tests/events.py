"""Collecting a job's progress events (engine.progress.Progress) in tests."""

from __future__ import annotations

from engine.progress import Progress


def train_events(lib, options=None, **kw) -> list[Progress]:
    """Every progress event of a fine-tune, in order; the last carries the result."""
    events: list[Progress] = []
    lib.train(options, progress=events.append, **kw)
    return events
