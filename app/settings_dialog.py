"""The settings dialog (Ctrl+,): the library's folders and exclusions, the models, fine-tuning.

Changes are written to the settings file when the dialog closes (the device at once).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from . import autostart
from .about import show_about
from .finetune import FineTunePanel
from .found_models import FoundModelsPanel
from .operations import PHOTOS
from .settings import save_settings

log = logging.getLogger(__name__)

DEVICE_CHOICES = (("auto", "Automatic (GPU when there is one)"), ("cpu", "CPU"),
                  ("cuda", "GPU (CUDA)"))


def device_choices() -> tuple[tuple[str, str], ...]:
    """What the model can run on here: the GPU is offered only where one is found."""
    from engine.models.devices import gpu_present  # imports torch (the model is loading by now)

    return tuple(c for c in DEVICE_CHOICES if c[0] != "cuda" or gpu_present())


# The bundled model's image towers (engine Library.upgrade names them so).
TOWER_CHOICES = (("lite0", "Faster (EfficientNet-Lite0)"),
                 ("lite1", "Better, slower to index (EfficientNet-Lite1)"))
NEXT_START = "Used from the next time Chikaku starts."


def _note(text: str, parent: QWidget) -> QLabel:
    label = QLabel(text, parent)
    label.setWordWrap(True)
    label.setStyleSheet("color: palette(placeholder-text);")
    return label


class SettingsDialog(QDialog):
    """Library folders, the model, fine-tuning and app settings. It is handed what it needs:
    the library's operations, the settings, and how to ask the person for a folder."""

    def __init__(self, ops, settings, choose_folder, parent=None, live=None) -> None:
        super().__init__(parent)
        self.ops = ops  # app.operations.Operations
        self.settings = settings
        self.choose_folder = choose_folder
        self.live = live  # app.live.LiveLibrary: watching, each folder's state
        self.status = None  # the last engine LibraryStatus shown
        self.setWindowTitle("Chikaku settings")
        self.resize(760, 560)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self._library_tab(), "Library")
        self.tabs.addTab(self._model_tab(), "Model")
        self.finetune = FineTunePanel(ops, settings, self)
        self.tabs.addTab(self.finetune, "Fine-tuning")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        about = buttons.addButton("About Chikaku", QDialogButtonBox.ButtonRole.HelpRole)
        about.clicked.connect(lambda: show_about(self))
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(buttons)

    # -- tabs -------------------------------------------------------------------------------------
    def _library_tab(self) -> QWidget:
        tab = QWidget(self)
        self.folders = QListWidget(tab)
        self.folders.itemSelectionChanged.connect(self._folder_selected)
        add = QPushButton("Add a folder…", tab)
        add.clicked.connect(lambda: self.choose_folder())
        self.remove_button = QPushButton("Remove from library…", tab)
        self.remove_button.clicked.connect(self._remove_clicked)
        self.rescan_button = QPushButton("Rescan now", tab)
        self.rescan_button.setToolTip("Look at the folder again now for new, changed, moved and "
                                      "deleted photos")
        self.rescan_button.clicked.connect(self._rescan_clicked)
        self.pause_button = QPushButton("Pause", tab)
        self.pause_button.setToolTip("A paused folder is not watched; its photos stay searchable")
        self.pause_button.clicked.connect(self._pause_clicked)
        self.watch_box = QCheckBox("Keep the library current while Chikaku is open (watch its "
                                   "folders for new, changed, moved and deleted photos)", tab)
        self.watch_box.setChecked(bool(self.settings.watch))
        self.watch_box.setEnabled(self.live is not None)
        self.watch_box.toggled.connect(self._watch_toggled)
        if self.live is not None:
            self.live.states_changed.connect(self._show_folder_states)
        self.patterns = QPlainTextEdit("\n".join(self.settings.exclude_patterns), tab)
        self.patterns.setPlaceholderText("*.png\nScreenshots\ntmp*")
        self.patterns.setFixedHeight(90)
        self._pattern_timer = QTimer(self, singleShot=True, interval=400)
        self._pattern_timer.timeout.connect(self._preview_patterns)
        self.patterns.textChanged.connect(self._pattern_timer.start)
        self.pattern_effect = _note("", tab)
        self.apply_patterns_button = QPushButton("Apply", tab)
        self.apply_patterns_button.setEnabled(False)
        self.apply_patterns_button.clicked.connect(self.apply_patterns)
        self.background_box = QCheckBox("Keep the library current when Chikaku is closed "
                                        "(a watcher starts when you log in)", tab)
        self.background_box.setChecked(autostart.enabled())
        self.background_box.toggled.connect(self._background_toggled)
        self.catalog = QLineEdit(tab, readOnly=True)
        self.library_dir = QLineEdit(tab, readOnly=True)
        folders_box = QGroupBox("Folders of photos", tab)
        fl = QVBoxLayout(folders_box)
        fl.addWidget(self.folders)
        fl.addWidget(self.watch_box)
        fl.addWidget(self.background_box)
        row = QHBoxLayout()
        row.addWidget(_note("Removing a folder takes its photos out of the library; the files "
                            "stay where they are.", tab), 1)
        row.addWidget(self.rescan_button)
        row.addWidget(self.pause_button)
        row.addWidget(self.remove_button)
        row.addWidget(add)
        fl.addLayout(row)
        excl = QGroupBox("Leave out files and folders named (one pattern a line)", tab)
        el = QVBoxLayout(excl)
        el.addWidget(self.patterns)
        effect_row = QHBoxLayout()
        effect_row.addWidget(self.pattern_effect, 1)
        effect_row.addWidget(self.apply_patterns_button)
        el.addLayout(effect_row)
        where = QFormLayout()
        where.addRow("Library folder", self.library_dir)
        where.addRow("Catalog", self.catalog)
        layout = QVBoxLayout(tab)
        layout.addWidget(folders_box, 1)
        layout.addWidget(excl)
        layout.addLayout(where)
        return tab

    def _model_tab(self) -> QWidget:
        tab = QWidget(self)
        self.active_label = QLabel(tab)
        self.active_label.setWordWrap(True)
        self.models = QTreeWidget(tab)
        self.models.setHeaderLabels(["Version", "Kind", "Created", "Held-out R@10", ""])
        self.models.setRootIsDecorated(False)
        self.models.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.models.itemSelectionChanged.connect(self._model_selected)
        self.use_button = QPushButton("Use this model", tab)
        self.use_button.clicked.connect(self._use_selected)
        self.device = QComboBox(tab)
        for value, text in device_choices():
            self.device.addItem(text, value)
        self.device.setCurrentIndex(max(0, self.device.findData(self.settings.device)))
        self.device.currentIndexChanged.connect(self.apply)
        row = QHBoxLayout()
        row.addWidget(_note("Switching models re-embeds photos the model has not seen; search "
                            "keeps working meanwhile.", tab), 1)
        row.addWidget(self.use_button)
        # One line, shown only when the engine offers a better base model for the active one.
        self.upgrade_label = QLabel(tab)
        self.upgrade_label.setWordWrap(True)
        self.upgrade_button = QPushButton("Upgrade", tab)
        self.upgrade_button.setToolTip("Re-embeds your photos with the better model while search "
                                       "keeps working; the current model stays in the list, so "
                                       "you can switch back at once.")
        self.upgrade_button.clicked.connect(self._upgrade_clicked)
        upgrade_row = QHBoxLayout()
        upgrade_row.addWidget(self.upgrade_label, 1)
        upgrade_row.addWidget(self.upgrade_button)
        self._show_upgrade(None)
        self.tower = QComboBox(tab)
        for value, text in TOWER_CHOICES:
            self.tower.addItem(text, value)
        self.tower.setEnabled(False)  # until the active model is known to be a bundled one
        self.tower_button = QPushButton("Switch", tab)
        self.tower_button.setToolTip("Re-embeds your photos with the other image model while "
                                     "search keeps working; the current model stays in the list.")
        self.tower_button.setEnabled(False)  # nothing to switch to until the tower is known
        self.tower_button.clicked.connect(self._tower_clicked)
        self.tower.currentIndexChanged.connect(self._tower_selected)
        self._active_tower: str | None = None
        tower_row = QHBoxLayout()
        tower_row.addWidget(self.tower, 1)
        tower_row.addWidget(self.tower_button)
        device_row = QFormLayout()
        device_row.addRow("Image model", tower_row)
        device_row.addRow("Run the model on", self.device)
        self.found = FoundModelsPanel(self.ops, tab)
        layout = QVBoxLayout(tab)
        layout.addWidget(self.active_label)
        layout.addLayout(upgrade_row)
        layout.addWidget(self.models, 1)
        layout.addLayout(row)
        layout.addWidget(self.found, 1)
        layout.addLayout(device_row)
        layout.addWidget(_note(NEXT_START, tab))
        return tab

    # -- filling ----------------------------------------------------------------------------------
    def set_status(self, status) -> None:
        """The library's current state (engine LibraryStatus); reloads the model list."""
        self.status = status
        self._show_folder_states()
        self.library_dir.setText(status.root)
        self.catalog.setText(str(Path(status.root) / "catalog.db"))
        self.ops.call("models", done=self._show_models)
        self.ops.call("upgrade_available", done=self._show_upgrade)
        self.ops.call("image_tower", done=self._show_tower)
        title = getattr(status, "model_title", "") or status.model_version
        self.active_label.setText(f"In use: <b>{title}</b>")
        self.active_label.setToolTip(f"version {status.model_version} ({status.model_family})")
        self.finetune.refresh_count()
        self.finetune._set_running(self.finetune.is_running())

    def _show_models(self, models: list) -> None:
        self.models.clear()
        for m in models:
            after = (m.info or {}).get("after", {})
            r10 = f"{after['t2i_r10']:.1f}" if "t2i_r10" in after else ""
            created = f"{m.created_at:%Y-%m-%d %H:%M}" if m.created_at else ""
            item = QTreeWidgetItem([m.title, m.family, created, r10,
                                    "in use" if m.active else ""])
            item.setData(0, Qt.ItemDataRole.UserRole, m.version)
            item.setToolTip(0, f"version {m.version}")
            if m.active:
                font = QFont(item.font(0))
                font.setBold(True)
                for col in range(5):
                    item.setFont(col, font)
            self.models.addTopLevelItem(item)
        for col in range(1, 5):
            self.models.resizeColumnToContents(col)
        self._model_selected()

    def _show_upgrade(self, description: str | None) -> None:
        self.upgrade_label.setText(f"A better base model is available: {description}."
                                   if description else "")
        self.upgrade_label.setVisible(bool(description))
        self.upgrade_button.setVisible(bool(description))
        self.upgrade_button.setEnabled(bool(description))

    def _show_tower(self, tower: str | None) -> None:
        """The active bundled model's image tower; None: not one whose tower can change."""
        self._active_tower = tower
        self.tower.setEnabled(tower is not None)
        self.tower.setToolTip("" if tower is not None else
                              "Only the bundled model's image model can be switched; "
                              "this model brings its own.")
        if tower is not None:
            self.tower.setCurrentIndex(max(0, self.tower.findData(tower)))
        self._tower_selected()

    def _tower_selected(self) -> None:
        self.tower_button.setEnabled(self._active_tower is not None
                                     and self.tower.currentData() != self._active_tower)

    def _tower_clicked(self) -> None:
        self.tower_button.setEnabled(False)
        self.ops.upgrade_model(self.tower.currentData())

    def _upgrade_clicked(self) -> None:
        self.upgrade_button.setEnabled(False)
        self.ops.upgrade_model()

    def _show_folder_states(self) -> None:
        """Each folder with what is happening to it (watching, polling, paused, indexing…)."""
        chosen = self.selected_folder()
        self.folders.clear()
        folders = self.status.folders if self.status is not None else []
        if not folders:
            self.folders.addItem("(no folders yet)")
        for folder in folders:
            state = self.live.state(folder) if self.live is not None else None
            item = QListWidgetItem(f"{folder}\n    {state.text}" if state else folder)
            item.setData(Qt.ItemDataRole.UserRole, folder)
            item.setToolTip(state.detail if state and state.detail else folder)
            self.folders.addItem(item)
            if folder == chosen:
                item.setSelected(True)
                self.folders.setCurrentItem(item)
        self._folder_selected()

    def selected_folder(self) -> str | None:
        items = self.folders.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def _folder_selected(self) -> None:
        folder = self.selected_folder()
        self.remove_button.setEnabled(bool(folder) and self.ops.can_remove_folders())
        paused = self.live is not None and folder in self.live.paused
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_button.setEnabled(bool(folder) and self.live is not None)
        self.rescan_button.setEnabled(bool(folder) and self.ops.ready)

    def _watch_toggled(self, on: bool) -> None:
        if self.live is not None:
            self.live.set_enabled(on)

    def _rescan_clicked(self) -> None:
        folder = self.selected_folder()
        if folder is None:
            return
        if self.live is not None:
            self.live.rescan(folder)
        else:
            self.ops.add_folder(folder)

    def _pause_clicked(self) -> None:
        folder = self.selected_folder()
        if folder is not None and self.live is not None:
            self.pause_button.setEnabled(False)
            self.live.set_paused(folder, folder not in self.live.paused)

    def _remove_clicked(self) -> None:
        folder = self.selected_folder()
        if not folder:
            return
        answer = QMessageBox.question(
            self, "Remove the folder?", f"Remove {folder} from the library? Its photos, their "
            "vectors and captions leave the catalog. The files on disk are not touched.")
        if answer == QMessageBox.StandardButton.Yes:
            self.remove_folder(folder)

    def remove_folder(self, folder: str) -> None:
        self.remove_button.setEnabled(False)
        self.ops.remove_folder(folder)

    def _model_selected(self) -> None:
        items = self.models.selectedItems()
        self.use_button.setEnabled(bool(items) and items[0].text(4) != "in use")

    def _use_selected(self) -> None:
        items = self.models.selectedItems()
        if items:
            self.use_button.setEnabled(False)
            self.ops.activate_model(items[0].data(0, Qt.ItemDataRole.UserRole))

    # -- saving -----------------------------------------------------------------------------------
    # -- leaving photos out ------------------------------------------------------------------------
    def pattern_lines(self) -> list[str]:
        return [ln.strip() for ln in self.patterns.toPlainText().splitlines() if ln.strip()]

    def _patterns_changed(self) -> bool:
        return self.pattern_lines() != list(self.settings.exclude_patterns)

    def _preview_patterns(self) -> None:
        """Say what the patterns typed would take out, before anything is applied."""
        changed = self._patterns_changed()
        self.apply_patterns_button.setEnabled(changed and self.ops.ready)
        if not changed:
            self.pattern_effect.setText("")
            return
        lines = self.pattern_lines()

        def show(paths: list[str]) -> None:
            if lines != self.pattern_lines():
                return  # typed on meanwhile: the next preview says it
            n = len(paths)
            self.pattern_effect.setText(
                f"Applying takes {n:,} photo{'s' * (n != 1)} out of the library (their captions "
                "are kept for when they come back)." if n else
                "No photo in the library matches these patterns; new ones that do are left out.")

        self.ops.call("excluded_by", lines, name="preview exclusions", done=show)

    def apply_patterns(self) -> None:
        """Apply the patterns now: the photos they match leave the library, and it says how
        many."""
        lines = self.pattern_lines()
        self.apply_patterns_button.setEnabled(False)
        self.settings.exclude_patterns = lines  # kept for the next start whatever happens now
        self.apply()

        def applied(n: int) -> None:
            text = (f"{n:,} photo{'s' * (n != 1)} left the library; their captions are kept "
                    "for when they come back." if n else "Applied; no photo left the library.")
            self.pattern_effect.setText(text)
            self.ops.statusbar.showMessage(text, 10000)

        self.ops.call("set_exclusions", lines, name="exclude photos", writes=True,
                      changes=PHOTOS, done=applied,
                      failed=lambda exc: self.ops.report_error("exclude photos", exc))

    def _background_toggled(self, on: bool) -> None:
        """Install or remove the login item that runs `chikaku watch` on this library."""
        try:
            if on and self.status is not None:
                autostart.enable(self.status.root)
            elif not on:
                autostart.disable()
        except OSError as e:
            self.background_box.blockSignals(True)
            self.background_box.setChecked(autostart.enabled())
            self.background_box.blockSignals(False)
            self.ops.report_error("keep the library current", e)

    def apply(self) -> None:
        settings = self.settings
        if not self.ops.ready:  # no library to apply them to: kept for the next start
            settings.exclude_patterns = self.pattern_lines()
        settings.device = self.device.currentData()
        settings.train_steps = self.finetune.steps.value()
        try:
            save_settings(settings)
        except OSError as e:
            log.warning("cannot save the settings: %s", e)
            self.ops.report_error("save the settings", e)

    def done(self, result: int) -> None:
        if self._patterns_changed() and self.ops.ready:
            self.apply_patterns()  # typed and not applied: applied now, and reported
        self.apply()
        super().done(result)
