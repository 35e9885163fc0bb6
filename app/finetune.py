"""Fine-tuning on the person's own captions: start, watch the loss, compare held-out recall
before and after, then keep the new model or go back to the previous one.

The training itself is the engine's (``Library.train``, reporting engine.progress events); this
panel runs it in the write lane and shows its events. Captions come in here too: a CSV or COCO
file, sidecar files beside the photos, or the descriptions written inside the photos, through the
engine's importers (engine.captions), each with its report.
"""

from __future__ import annotations

import time
from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.config import MIN_PHOTOS
from engine.errors import Cancelled
from engine.recall import KS, RECALL_KEYS

from .compare import CompareView, compare_job
from .operations import CAPTIONS, MODEL, PHOTOS, pace
from .workers import error_text

RECALL_ROWS = tuple(zip(RECALL_KEYS, [f"{side}, top {k}" for side in ("Text → photo",
                                                                     "Photo → text")
                                      for k in KS], strict=True))
BEFORE, AFTER = 0, 1
# Effort: training steps at most. Quick is the command line's default; thorough allows three
# times as many, and early stopping ends it once the held-out photos stop getting better, so it
# only costs time where time helps. On a few hundred photos both take the same few dozen steps
# (the engine fits the steps to the photos).
QUICK_STEPS = 200
THOROUGH_STEPS = 600


IMPORTS = (("csv", "From a CSV file (image, caption)…"), ("coco", "From a COCO captions file…"),
           ("sidecars", "From sidecar files beside the photos (.txt, .xmp)"),
           ("embedded", "From the descriptions inside the photos"))


def import_job(library, kind: str, path: str | None = None):
    """One of the engine's caption importers (runs in a worker); its ImportReport."""
    from engine import captions

    if kind == "csv":
        return captions.import_csv(library, path)
    if kind == "coco":
        return captions.import_coco(library, path)
    if kind == "sidecars":
        return captions.import_sidecars(library)
    return captions.import_embedded(library)


def report_text(report) -> str:
    """An ImportReport for a person: what came in, and what did not and why (the first few)."""
    text = (f"{report.captions_added:,} caption{'s' * (report.captions_added != 1)} added to "
            f"{report.photos_matched:,} photo{'s' * (report.photos_matched != 1)}")
    if report.duplicates:
        text += f"; {report.duplicates:,} were there already"
    if report.unmatched:
        shown = "; ".join(f"{name}: {why}" for name, why in report.unmatched[:3])
        more = f" and {len(report.unmatched) - 3:,} more" if len(report.unmatched) > 3 else ""
        text += f". Not imported ({len(report.unmatched):,}): {shown}{more}"
    return text + "."


def train_job(library, steps: int, base_options=None, progress=None, cancel=None):
    """The engine's training with the chosen number of steps (runs in a worker)."""
    from engine.config import TrainOptions

    options = replace(base_options or TrainOptions(), steps=steps)
    return library.train(options, progress=progress, cancel=cancel)


class FineTunePanel(QWidget):
    def __init__(self, ops, settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ops = ops  # app.operations.Operations: the library's calls and the status bar
        self.settings = settings
        self.base_options = None  # engine.config.TrainOptions; None: the engine's defaults
        self.result = None  # the last run's engine.training.loop.TrainResult
        self._worker = None
        self._last_step = 0
        self._steps = 0
        self._asked = 0  # steps asked for (fewer are taken on few photos)
        self._reading_since: tuple[float, int] | None = None
        self._stopped_early = False
        self._build()
        self._set_running(False)

    def _build(self) -> None:
        self.count_label = QLabel(self)
        self.count_label.setWordWrap(True)
        self.steps = QSpinBox(self, minimum=10, maximum=100_000, singleStep=50)
        self.steps.setValue(self.settings.train_steps)
        self.steps.setToolTip("Training steps: each shows the model one batch of your captioned "
                              "photos. It stops earlier when search on the held-out photos stops "
                              "getting better.")
        self.quick = QRadioButton("Quick", self)
        self.quick.setToolTip(f"Up to {QUICK_STEPS} training steps (fewer on a few hundred "
                              "photos, which are learnt sooner): minutes on a laptop")
        self.thorough = QRadioButton("Thorough", self)
        self.thorough.setToolTip(f"Up to {THOROUGH_STEPS} training steps, for as long as search "
                                 "on your held-out photos keeps getting better")
        self.quick.toggled.connect(lambda on: on and self.steps.setValue(QUICK_STEPS))
        self.thorough.toggled.connect(lambda on: on and self.steps.setValue(THOROUGH_STEPS))
        self.steps.valueChanged.connect(self._steps_changed)
        self._steps_changed(self.steps.value())
        self.advanced = QGroupBox("Advanced", self)
        self.advanced.setCheckable(True)
        self.advanced.setChecked(False)  # folded: the effort is all most people choose
        self.advanced.setFlat(True)
        self.advanced.toggled.connect(self._advanced_toggled)
        self.start_button = QPushButton("Start fine-tuning", self)
        self.start_button.clicked.connect(self.start)
        self.captioned = 0  # photos with captions, as last counted
        self.import_button = QPushButton("Import captions", self)
        menu = QMenu(self.import_button)
        for kind, text in IMPORTS:
            menu.addAction(text, lambda kind=kind: self.import_captions(kind))
        self.import_button.setMenu(menu)
        self.import_label = QLabel(self)
        self.import_label.setWordWrap(True)
        self.import_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.ops.changed.connect(self._library_changed)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar(self)
        self.step_label = QLabel("", self)
        self.step_label.setWordWrap(True)  # the finishing words are a sentence or two
        self.table = QTableWidget(len(RECALL_ROWS), 2, self)
        self.table.setHorizontalHeaderLabels(["Before", "After"])
        self.table.setVerticalHeaderLabels([label for _, label in RECALL_ROWS])
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setFixedHeight(self.table.verticalHeader().length()
                                  + self.table.horizontalHeader().height() + 4)
        self.result_label = QLabel(self)
        self.result_label.setWordWrap(True)
        self.compare = CompareView(self)
        self.keep_button = QPushButton("Keep new model", self)
        self.keep_button.clicked.connect(self.keep)
        self.back_button = QPushButton("Go back", self)
        self.back_button.clicked.connect(self.go_back)
        self._lay_out()

    def _lay_out(self) -> None:
        controls = QGridLayout()
        controls.addWidget(QLabel("Effort", self), 0, 0)
        controls.addWidget(self.quick, 0, 1)
        controls.addWidget(self.thorough, 0, 2)
        controls.addWidget(self.start_button, 0, 3)
        controls.addWidget(self.cancel_button, 0, 4)
        controls.setColumnStretch(5, 1)
        advanced = QGridLayout(self.advanced)
        self.steps_label = QLabel("Training steps", self.advanced)
        advanced.addWidget(self.steps_label, 0, 0)
        advanced.addWidget(self.steps, 0, 1)
        advanced.setColumnStretch(2, 1)
        self._advanced_toggled(False)
        controls.addWidget(self.advanced, 1, 0, 1, 6)
        decide = QHBoxLayout()
        decide.addStretch(1)
        decide.addWidget(self.keep_button)
        decide.addWidget(self.back_button)
        # the whole tab scrolls: on a short window nothing is squeezed over anything else
        body = QWidget(self)
        page = QScrollArea(self)
        page.setWidget(body)
        page.setWidgetResizable(True)
        page.setFrameShape(QScrollArea.Shape.NoFrame)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(page)
        outer.addLayout(decide)  # always in sight, below what scrolls
        layout = QVBoxLayout(body)
        counted = QHBoxLayout()
        counted.addWidget(self.count_label, 1)
        counted.addWidget(self.import_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(counted)
        layout.addWidget(self.import_label)
        layout.addLayout(controls)
        layout.addWidget(self.progress)
        layout.addWidget(self.step_label)
        layout.addWidget(QLabel("Search quality on held-out captioned photos (recall, %)", self))
        layout.addWidget(self.table)
        layout.addWidget(self.result_label)
        layout.addWidget(self.compare)
        layout.addStretch(1)

    def _steps_changed(self, steps: int) -> None:
        for button, value in ((self.quick, QUICK_STEPS), (self.thorough, THOROUGH_STEPS)):
            button.blockSignals(True)
            button.setAutoExclusive(False)  # (else a ticked radio button cannot be unticked)
            button.setChecked(steps == value)  # neither, for a number chosen under Advanced
            button.setAutoExclusive(True)
            button.blockSignals(False)
        self.settings.train_steps = steps

    def _advanced_toggled(self, on: bool) -> None:
        for w in (self.steps_label, self.steps):
            w.setVisible(on)

    # -- state ------------------------------------------------------------------------------------
    def refresh_count(self) -> None:
        self.ops.call("captioned_photo_count", name="caption count", done=self._show_count)

    def _show_count(self, n: int) -> None:
        self.captioned = n
        text = (f"{n:,} photo{'s' * (n != 1)} {'have' if n != 1 else 'has'} captions. "
                "Fine-tuning teaches the model the words you use for your photos; a part of "
                "the captioned photos is held out to measure whether search got better.")
        if n < MIN_PHOTOS:
            text += (f" It needs at least {MIN_PHOTOS} captioned photos: caption "
                     f"{MIN_PHOTOS - n} more (in the preview) or import captions.")
        self.count_label.setText(text)
        self._set_running(self.is_running())

    def _library_changed(self, what: str) -> None:
        if what in (CAPTIONS, PHOTOS):
            self.refresh_count()

    def import_captions(self, kind: str) -> None:
        """Import captions of one kind (asking for the file where there is one)."""
        path = None
        if kind in ("csv", "coco"):
            pattern = "CSV files (*.csv)" if kind == "csv" else "COCO captions (*.json)"
            path, _ = QFileDialog.getOpenFileName(self, "Import captions", "", pattern)
            if not path:
                return
        self.run_import(kind, path)

    def run_import(self, kind: str, path: str | None = None) -> None:
        self.import_button.setEnabled(False)
        self.import_label.setText("Importing captions…")

        def done(report) -> None:
            self.import_button.setEnabled(True)
            self.import_label.setText(report_text(report))
            self.ops.report_success("import captions")

        def failed(exc: BaseException) -> None:
            self.import_button.setEnabled(True)
            self.import_label.setText(f"Could not import: {error_text(exc)}")

        self.ops.call(import_job, kind, path, name="import captions", writes=True,
                      changes=CAPTIONS, done=done, failed=failed)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running and self.ops.ready
                                     and self.captioned >= MIN_PHOTOS)
        self.steps.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        decided = self.result is None or running
        self.keep_button.setEnabled(not decided)
        self.back_button.setEnabled(not decided)

    def is_running(self) -> bool:
        return self._worker is not None

    def _set_recall(self, column: int, recall: dict | None) -> None:
        for row, (key, _label) in enumerate(RECALL_ROWS):
            text = f"{recall[key]:.1f}" if recall and key in recall else "–"
            item = QTableWidgetItem(text)
            item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            self.table.setItem(row, column, item)

    def recall_text(self, column: int) -> list[str]:
        return [self.table.item(r, column).text() if self.table.item(r, column) else ""
                for r in range(len(RECALL_ROWS))]

    # -- running ----------------------------------------------------------------------------------
    def start(self) -> None:
        if not self.ops.ready or self._worker is not None or self.captioned < MIN_PHOTOS:
            return
        self.result = None
        self._last_step = 0
        self._reading_since = None
        self._stopped_early = False
        for column in (BEFORE, AFTER):
            self._set_recall(column, None)
        self.result_label.clear()
        self.compare.clear()
        self.progress.setRange(0, self.steps.value())
        self.progress.setValue(0)
        self._asked = self.steps.value()
        self.step_label.setText("Preparing…")
        self._worker = self.ops.call(
            train_job, self.steps.value(), self.base_options, name="train", writes=True,
            pass_progress=True, cancellable=True, progress=self._event, done=self._finished,
            failed=self._failed)
        self.ops.statusbar.start_activity("train", "Fine-tuning…", self._worker.cancel)
        self._set_running(True)

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self.step_label.setText("Cancelling…")

    def _event(self, ev) -> None:
        """One engine.progress.Progress event of the fine-tune (training, then activating)."""
        if ev.job == "training" and ev.kind == "reading" and ev.total:
            now = time.monotonic()
            if self._reading_since is None:
                self._reading_since = (now, ev.done)
            text = (f"Reading photos {ev.done:,} of {ev.total:,}"
                    + pace(ev.done, ev.total, self._reading_since, now))
            self.progress.setRange(0, ev.total)
            self.progress.setValue(ev.done)
            self.step_label.setText(text)
            self.ops.statusbar.update_activity("train", f"Fine-tuning: {text}", ev.done,
                                               ev.total)
        elif ev.job == "activating":
            if ev.kind == "indexing" and ev.total:
                text = f"Re-embedding photos {ev.done:,} of {ev.total:,}"
                self.progress.setRange(0, ev.total)  # training is over: now the photos
                self.progress.setValue(ev.done)
                self.step_label.setText(text)
                self.ops.statusbar.update_activity("train", text, ev.done, ev.total)
        elif ev.kind == "step":
            if self.progress.maximum() != ev.total:
                self.progress.setRange(0, ev.total)  # reading is over: now the steps
            self._steps = ev.total
            if ev.message and "stopped early" in ev.message:
                self._stopped_early = True
            self._last_step = ev.done
            self.progress.setValue(ev.done)
            loss = f"  ·  loss {ev.loss:.3f}" if ev.loss is not None else ""
            self.step_label.setText(f"Step {ev.done:,} of {ev.total:,}{loss}"
                                    + (f"  ·  {ev.message}" if ev.message else ""))
            self.ops.statusbar.update_activity(
                "train", f"Fine-tuning: step {ev.done:,} of {ev.total:,}{loss}", ev.done,
                ev.total)
        elif ev.kind == "eval" and ev.recall:
            self._set_recall(BEFORE if ev.done == 0 else AFTER, ev.recall)
        elif ev.kind == "done" and ev.result is not None:
            self.result = ev.result
        elif ev.message:
            self.step_label.setText(ev.message[:1].upper() + ev.message[1:])
            if ev.total:
                self.ops.statusbar.update_activity("train", ev.message, ev.done, ev.total)

    def _finished(self, _value) -> None:
        self._worker = None
        self.ops.report_success("train")
        self.ops.statusbar.end_activity("train", "Fine-tuning finished.")
        r = self.result
        if r is not None:
            self.progress.setValue(self.progress.maximum())
            photos = getattr(r, "photos", 0)
            on = f" on {photos:,} captioned photos" if photos else ""
            if self._stopped_early:
                self.step_label.setText(
                    f"Stopped early after {self._last_step:,} of {self._steps:,} steps{on}: "
                    "search on the held-out photos had stopped getting better, so more steps "
                    "would not have helped.")
            elif self._steps < self._asked:  # the steps were fitted to the photos
                self.step_label.setText(
                    f"Finished after {self._last_step:,} steps{on}: for so few photos that is "
                    "enough, and more steps would only have it learn them by heart.")
            else:
                self.step_label.setText(f"Finished after {self._last_step:,} steps{on}.")
            self._set_recall(BEFORE, r.before)
            self._set_recall(AFTER, r.after)
            self.result_label.setText(self._verdict(r))
            self.show_comparison(r.parent, r.version)
            if r.activated:
                self.ops.changed.emit(MODEL)
        self._set_running(False)

    def show_comparison(self, before: str, after: str) -> None:
        """The before/after examples, as soon as they are made (in the background)."""
        self.compare.clear("Searching three of your held-out captions with both models…")
        self.ops.call(compare_job, before, after, name="compare models",
                      done=self.compare.show_examples, log_failures=False,
                      failed=lambda exc: self.compare.clear(
                          f"The two models could not be shown side by side: {error_text(exc)}"))

    @staticmethod
    def _verdict(r) -> str:
        why = f"Judged on photos set aside from training, {r.verdict}. " if r.verdict else ""
        try:
            before, after = r.before["t2i_r10"], r.after["t2i_r10"]
            why += (f"It finds the right photo in its top 10 for {after:.0f}% of those photos' "
                    f"captions (the model in use before: {before:.0f}%). ")
        except (KeyError, TypeError):
            pass
        if r.activated:
            return (f"{why}The new model is now in use. Keep it, or go back to the previous "
                    "one.")
        return f"{why}The previous model is still in use. You can keep the new one anyway."

    def _failed(self, exc: BaseException) -> None:
        self._worker = None
        self.ops.statusbar.end_activity("train")
        if isinstance(exc, Cancelled):
            self.step_label.setText("Cancelled. The model in use is unchanged.")
        else:
            self.step_label.setText(f"Fine-tuning stopped: {error_text(exc)}")
            self.ops.report_error("train", exc)
        self._set_running(False)

    # -- deciding ---------------------------------------------------------------------------------
    def keep(self) -> None:
        r, self.result = self.result, None
        self._set_running(False)
        if r is None:
            return
        if r.activated:
            self.result_label.setText("The new model stays in use.")
            return
        self.result_label.setText("Switching to the new model…")
        self.ops.activate_model(r.version, done=lambda ok: self._switched(
            ok, "The new model is now in use."))

    def go_back(self) -> None:
        r, self.result = self.result, None
        self._set_running(False)
        if r is None:
            return
        if not r.activated:
            self.result_label.setText("The previous model stays in use.")
            return
        self.result_label.setText("Going back to the previous model…")
        self.ops.activate_model(r.parent, done=lambda ok: self._switched(
            ok, "The previous model is in use again."))

    def _switched(self, ok: bool, text: str) -> None:
        self.result_label.setText(text if ok else "The model in use is unchanged.")
