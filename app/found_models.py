"""Settings → Model: CLIP weights already on this computer (other tools' caches, Downloads),
with a one-click try that switches the library to one and says whether search got better on the
held-out captioned photos; going back is one click too.

Discovery and trying are the engine's (``engine.models.discover``, ``engine.tryout``); this
panel runs them off the UI thread and shows what they found and measured. Nothing is downloaded.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.errors import Cancelled

from .operations import MODEL
from .workers import error_text

COLUMNS = ("Model", "Pretrained on", "Size", "Speed", "Quality (estimate)", "Found in")


def discover_job():
    from engine.models.discover import discover

    return discover()


def try_job(library, found, progress=None, cancel=None):
    from engine.tryout import try_model

    return try_model(library, found, progress=progress, cancel=cancel)


class FoundModelsPanel(QGroupBox):
    def __init__(self, ops, parent: QWidget | None = None) -> None:
        super().__init__("Found on this computer", parent)
        self.ops = ops  # app.operations.Operations: the library's calls and the status bar
        self.found: list = []  # engine FoundModel, in the list's order
        self.trial = None  # the last engine.tryout.Trial
        self._searched = False
        self._trying = None
        self.list = QTreeWidget(self)
        self.list.setHeaderLabels(COLUMNS)
        self.list.setRootIsDecorated(False)
        self.list.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.list.itemSelectionChanged.connect(self._update_buttons)
        self.note = QLabel("CLIP weights other programs left on this computer (Hugging Face "
                           "and CLIP caches, rclip, Downloads) are listed here. Nothing is "
                           "downloaded, and files are only read, never run.", self)
        self.result = QLabel(self)
        for label in (self.note, self.result):
            label.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.look_button = QPushButton("Look again", self)
        self.look_button.clicked.connect(self.refresh)
        self.try_button = QPushButton("Try this model", self)
        self.try_button.clicked.connect(self.try_selected)
        self.back_button = QPushButton("Go back", self)
        self.back_button.clicked.connect(self.go_back)
        self.back_button.hide()
        row = QHBoxLayout()
        row.addWidget(self.result, 1)
        row.addWidget(self.look_button)
        row.addWidget(self.back_button)
        row.addWidget(self.try_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addWidget(self.list, 1)
        layout.addLayout(row)
        self._update_buttons()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        if not self._searched:  # looked for the first time the tab is opened, not before
            self.refresh()

    # -- discovery --------------------------------------------------------------------------------
    def refresh(self) -> None:
        self._searched = True
        self.look_button.setEnabled(False)
        self.result.setText("Looking for CLIP weights…")
        # not a library call: it only reads other programs' folders
        self.ops.jobs.submit(discover_job, name="discover models", done=self.show_found,
                             failed=self._discovery_failed)

    def show_found(self, discovery) -> None:
        self.look_button.setEnabled(True)
        self.found = list(discovery.found)
        self.list.clear()
        for f in self.found:
            item = QTreeWidgetItem([f.title, f.pretrained, f"{f.size_bytes / 1e6:,.0f} MB",
                                    f.speed, f.quality, f.place])
            item.setToolTip(0, f"{f.path}\n{f.estimate}; identified by {f.identified_by}")
            self.list.addTopLevelItem(item)
        for col in range(1, len(COLUMNS)):
            self.list.resizeColumnToContents(col)
        places = ", ".join(p for p, _ in discovery.searched) or "none of the usual places exists"
        text = (f"{len(self.found)} found (looked in: {places})." if self.found else
                f"No CLIP weights found (looked in: {places}).")
        if discovery.skipped:
            text += f" {len(discovery.skipped)} left alone: " + "; ".join(
                f"{s.path.rsplit('/', 1)[-1]}: {s.reason}" for s in discovery.skipped[:3])
        if self.trial is None:
            self.result.setText(text)
        self._update_buttons()

    def _discovery_failed(self, exc: BaseException) -> None:
        self.look_button.setEnabled(True)
        self.result.setText(f"Could not look for CLIP weights: {error_text(exc)}")

    # -- trying -----------------------------------------------------------------------------------
    def selected(self):
        items = self.list.selectedItems()
        return self.found[self.list.indexOfTopLevelItem(items[0])] if items else None

    def try_selected(self) -> None:
        found = self.selected()
        if found is None or not self.ops.ready or self._trying is not None:
            return
        self.trial = None
        self.back_button.hide()
        self.result.setText(f"Trying {found.title}: every photo is embedded with it first; "
                            "search keeps using the current model meanwhile.")
        self._trying = found
        worker = self.ops.call(try_job, found, name="try model", writes=True, changes=MODEL,
                               pass_progress=True, cancellable=True, progress=self._progress,
                               done=self._tried, failed=self._try_failed)
        self.ops.statusbar.start_activity("try", f"Trying {found.title}…", worker.cancel)
        self._update_buttons()

    def _progress(self, event) -> None:
        """engine.progress.Progress of the activation: photos embedded with the new model."""
        if event.total and self._trying is not None:
            self.ops.statusbar.update_activity(
                "try", f"Trying {self._trying.title}: embedding {event.done:,} of "
                f"{event.total:,} photos", event.done, event.total)

    def _tried(self, trial) -> None:
        self._trying = None
        self.trial = trial
        self.ops.statusbar.end_activity("try", f"Now using {trial.found.title}.")
        self.result.setText(self.trial_text(trial))
        self.back_button.setVisible(trial.version != trial.previous)
        self._update_buttons()

    @staticmethod
    def trial_text(trial) -> str:
        text = f"Now using {trial.found.title} ({trial.found.pretrained})."
        if trial.before and trial.after:
            text += (f" On {trial.photos:,} held-out captioned photos, the right photo was in "
                     f"the top 10 for {trial.before['t2i_r10']:.0f}% of captions before and "
                     f"{trial.after['t2i_r10']:.0f}% now.")
        return f"{text} {trial.verdict[:1].upper()}{trial.verdict[1:]}."

    def _try_failed(self, exc: BaseException) -> None:
        self._trying = None
        self.ops.statusbar.end_activity("try")
        self.result.setText("Trying was cancelled; the model in use is unchanged."
                            if isinstance(exc, Cancelled)
                            else f"Could not try this model: {error_text(exc)}")
        self._update_buttons()

    def go_back(self) -> None:
        if self.trial is None:
            return
        previous = self.trial.previous
        self.back_button.setEnabled(False)
        self.ops.activate_model(previous, done=lambda ok: self._went_back(ok, previous))

    def _went_back(self, ok: bool, previous: str) -> None:
        self.back_button.setEnabled(True)
        if ok:
            self.trial = None
            self.back_button.hide()
            self.result.setText(f"Back to the model used before ({previous}).")
        self._update_buttons()  # (the switch itself refreshes the window)

    def _update_buttons(self) -> None:
        self.try_button.setEnabled(self.selected() is not None and self._trying is None
                                   and self.ops.ready)
