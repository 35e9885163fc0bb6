"""Slow work off the UI thread: one worker class, a pool for reads and a serial lane for writes.

Every job the app runs (opening the library, searching, indexing, thumbnails, training,
re-embedding, saving captions) is a plain function handed to ``Jobs.submit``. It runs in a
``QThreadPool`` inside a ``Worker``; the worker reports back through its own signals object, which
lives on the UI thread, so every callback runs on the UI thread. A worker never raises into Qt:
an exception becomes the ``failed`` signal. Catalog writes go through ``lane="write"``, a pool of
one thread, so two writers never race.

A long job (indexing, training, switching models) takes the worker's ``report`` as its ``progress``
callback: each engine.progress.Progress event it emits becomes a ``progress`` signal (thinned out
per kind), and the job's return value is the result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal

from engine.errors import Cancelled

log = logging.getLogger(__name__)

# Routine progress (one event per photo or per training step) is thinned to this interval so a
# fast job cannot flood the UI thread's event queue; an event of a new kind always goes through,
# after the last one held back (the last step, "stopped early"), which is never lost.
PROGRESS_INTERVAL_S = 0.05


class WorkerSignals(QObject):
    progress = Signal(object)
    finished = Signal(object)
    failed = Signal(object)


class Worker(QRunnable):
    """Runs ``fn(*args, **kwargs)`` once on a pool thread and reports through ``signals``."""

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict, name: str,
                 signals_parent: QObject | None = None) -> None:
        super().__init__()
        self.setAutoDelete(False)  # Jobs keeps it alive until its last signal is handled
        self.fn, self.args, self.kwargs, self.name = fn, args, kwargs, name
        self.signals = WorkerSignals(signals_parent)
        self.cancel_event = threading.Event()
        self.log_failures = True
        self._last_kind: object = None
        self._last_emit = 0.0
        self._held = None  # the latest event held back by the thinning, still to be shown
        self._lock = threading.Lock()

    def cancel(self) -> None:
        self.cancel_event.set()

    def report(self, event) -> None:
        """The emit callback handed to engine jobs (engine.progress.Progress events); safe to
        call from any thread. Events of one kind are thinned out, the latest one held back;
        a new kind passes, after the held one (which a newer event of its kind replaces)."""
        kind = (event.job, event.kind)
        now = time.monotonic()
        with self._lock:
            if kind == self._last_kind and now - self._last_emit < PROGRESS_INTERVAL_S:
                self._held = event
                return
            held, self._held = self._held, None
            self._last_kind, self._last_emit = kind, now
        if held is not None and (held.job, held.kind) != kind:
            self.signals.progress.emit(held)
        self.signals.progress.emit(event)

    def _flush(self) -> None:
        """The event held back last, before the job's end is told."""
        with self._lock:
            held, self._held = self._held, None
        if held is not None:
            self.signals.progress.emit(held)

    def run(self) -> None:
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # reported to the UI thread, never raised into Qt
            self._flush()
            self.signals.failed.emit(exc)
        else:
            self._flush()
            self.signals.finished.emit(result)


class Jobs(QObject):
    """Submits workers, keeps them alive while they run, and logs what fails."""

    def __init__(self, parent: QObject | None = None, read_threads: int = 0,
                 on_error: Callable[[str, BaseException], None] | None = None) -> None:
        super().__init__(parent)
        self.on_error = on_error
        self._pools = {"read": QThreadPool(self), "write": QThreadPool(self),
                       "thumbs": QThreadPool(self)}
        cores = QThreadPool.globalInstance().maxThreadCount()
        self._pools["read"].setMaxThreadCount(read_threads or max(2, cores))
        self._pools["write"].setMaxThreadCount(1)
        self._pools["thumbs"].setMaxThreadCount(max(2, min(4, cores)))
        self._running: set[Worker] = set()

    def submit(self, fn: Callable[..., Any], *args, name: str = "", lane: str = "read",
               done: Callable[[Any], None] | None = None,
               failed: Callable[[BaseException], None] | None = None,
               progress: Callable[[Any], None] | None = None,
               pass_progress: bool = False, cancellable: bool = False,
               log_failures: bool = True, **kwargs) -> Worker:
        """Run ``fn`` off the UI thread. ``pass_progress``/``cancellable`` add the engine's
        ``progress=`` and ``cancel=`` keyword arguments, wired to this worker."""
        worker = Worker(fn, args, kwargs, name or getattr(fn, "__name__", "job"), self)
        worker.log_failures = log_failures
        if pass_progress:
            worker.kwargs["progress"] = worker.report
        if cancellable:
            worker.kwargs["cancel"] = worker.cancel_event
        queued = Qt.ConnectionType.QueuedConnection
        if progress is not None:
            worker.signals.progress.connect(progress, queued)
        worker.signals.finished.connect(lambda r: self._finish(worker, done, r), queued)
        worker.signals.failed.connect(lambda e: self._fail(worker, failed, e), queued)
        self._running.add(worker)
        self._pools[lane].start(worker)
        return worker

    def _retire(self, worker: Worker) -> None:
        self._running.discard(worker)
        worker.signals.deleteLater()

    def _finish(self, worker: Worker, done, result) -> None:
        self._retire(worker)
        if done is not None:
            done(result)

    def _fail(self, worker: Worker, failed, exc: BaseException) -> None:
        self._retire(worker)
        if isinstance(exc, Cancelled):
            log.info("%s was cancelled", worker.name)
        elif not worker.log_failures:
            log.debug("%s failed: %s", worker.name, exc)
        else:
            log.error("%s failed", worker.name, exc_info=(type(exc), exc, exc.__traceback__))
        if failed is not None:
            failed(exc)
        elif not isinstance(exc, Cancelled) and self.on_error is not None:
            self.on_error(worker.name, exc)

    # -- inspection and shutdown ------------------------------------------------------------------
    def running(self, name: str | None = None) -> list[Worker]:
        return [w for w in self._running if name is None or w.name == name]

    def is_busy(self, name: str) -> bool:
        return bool(self.running(name))

    def cancel_all(self) -> None:
        for worker in list(self._running):
            worker.cancel()

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until every pool is idle (at exit); True if they all finished in time."""
        return all(pool.waitForDone(timeout_ms) for pool in self._pools.values())


def error_text(exc: BaseException) -> str:
    """What to tell the person: the exception's own message, never a traceback."""
    text = str(exc).strip()
    if not text:
        return f"an unexpected error occurred ({type(exc).__name__})"
    return text if len(text) <= 400 else text[:400] + "…"
