"""One progress protocol for every long job: indexing, training, activating a model, watching.

A job takes an ``emit`` callback, which it calls with :class:`Progress` events on the thread it
runs on, and a cancel token (a ``threading.Event``), which it checks between units of work and
answers by raising ``engine.errors.Cancelled`` with what was kept. The job's outcome is its return
value; the last event of a job that ends normally has ``kind == "done"`` and the same outcome in
``result``. The command line prints events; the app turns each into one Qt signal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .recall import Recall


@dataclass(frozen=True)
class Progress:
    job: str  # indexing | training | activating | watching
    # indexing: scanning, indexing, done; training: prepare, step, eval, done; activating:
    # reembed; watching: watching, indexing, indexed, unavailable, resumed, paused, removed,
    # fallback (the watch limit), error, stopped
    kind: str
    done: int = 0  # units finished (photos, steps), of ``total``
    total: int = 0
    message: str = ""  # for the person, when there is something to say
    path: str | None = None  # the photo or folder concerned
    folders: tuple[str, ...] = ()  # every folder of a watcher's indexing pass
    loss: float | None = None  # training
    recall: Recall | None = None  # training: held-out recall
    result: Any = None  # the job's outcome (IndexReport, TrainResult), on its "done" event

    @property
    def fraction(self) -> float | None:
        """How far the job is, 0 to 1, when it knows."""
        return self.done / self.total if self.total > 0 else None


Emit = Callable[[Progress], None]


def silent(_event: Progress) -> None:
    """The emit callback of a caller that does not listen."""


def as_job(emit: Emit | None, job: str, kind: str | None = None) -> Emit:
    """``emit`` relabelled: the indexer's events, say, reported as a model activation's."""
    if emit is None:
        return silent

    def relabel(event: Progress) -> None:
        emit(replace(event, job=job, kind=kind or event.kind))

    return relabel
