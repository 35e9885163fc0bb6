"""Named things in the app: "Name these…" for the photos selected in the grid, and ``@`` names
completed in the search field.

The dialog asks for the name (the names there already are offered, so that more photos of Mia
go to @mia) and whether to add it to the photos' captions, so that the next fine-tune learns the
word itself. The naming runs as a library operation (``Library.name_photos``) in the write lane;
the engine checks the name and the photos, and its message is shown when it refuses them.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QObject, QStringListModel, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QCompleter,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from .operations import CAPTIONS
from .workers import error_text

BEST = (5, 20)  # how many photos make a good name (engine.names.BEST_PHOTOS), as advice
_TYPING_NAME = re.compile(r"(?:^|(?<=[\s+\-*]))@([\w'-]*)$")  # "@mi" just before the cursor


class NameDialog(QDialog):
    """Asks what to call the selected photos."""

    def __init__(self, count: int, names: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Name these photos")
        self.count = count
        layout = QVBoxLayout(self)
        advice = ("" if BEST[0] <= count <= BEST[1] else
                  f" (a name works best with {BEST[0]} to {BEST[1]} photos of its subject)")
        self.intro = intro = QLabel(f"What is in these {count:,} photos? A person, a pet, a place: give it a "
                       f"name, then search for it as @name{advice}.", self)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.field = QLineEdit(self)
        self.field.setPlaceholderText("e.g. mia, rex, red-car")
        self.field.setAccessibleName("Name")
        self.field.setMaxLength(41)
        self.set_names(names)
        layout.addWidget(self.field)
        self.captions = QCheckBox("Also add the name to these photos' captions (the next "
                                  "fine-tune then learns the word itself)", self)
        layout.addWidget(self.captions)
        self.problem = QLabel(self)
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #b00020;")
        self.problem.hide()
        layout.addWidget(self.problem)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel, self)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Name them")
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.field.textChanged.connect(lambda _t: self.problem.hide())

    def set_names(self, names: list[str]) -> None:
        """The names there are, offered as the name is typed."""
        completer = QCompleter(names, self.field)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.field.setCompleter(completer)

    def name(self) -> str:
        return self.field.text().strip()

    def _accept(self) -> None:
        if not self.name().lstrip("@"):
            self.show_problem("Type a name first.")
            return
        self.accept()

    def show_problem(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.show()


class NameActions(QObject):
    """"Name these…" over the grid's selection, and the names for the search field."""

    def __init__(self, grid, ops, field: QLineEdit | None, parent: QWidget) -> None:
        super().__init__(parent)
        self.grid, self.ops, self.window = grid, ops, parent
        self.names: list[str] | None = None  # None: not read from the library yet
        self.dialog: NameDialog | None = None
        self.completion = (NameCompletion(field, self.refresh, self) if field is not None
                           else None)
        ops.changed.connect(lambda _what: self.refresh())

    def refresh(self) -> None:
        """Read the library's names again (for the dialog and the field's completion)."""
        self.ops.call("named_things", name="names", log_failures=False, done=self._names,
                      failed=lambda _exc: None)

    def _names(self, things: list) -> None:
        self.names = [t.name for t in things]
        if self.dialog is not None:
            self.dialog.set_names(self.names)
        if self.completion is not None:
            self.completion.set_names(self.names)

    def selected_ids(self) -> list[int]:
        """The selected photos' ids, in the grid's order (the current photo when none is)."""
        hits = self.grid.selected_hits()
        if not hits and self.grid.current_hit() is not None:
            hits = [self.grid.current_hit()]
        return [h.photo_id for h in hits]

    def name_selected(self) -> None:
        """Ask for a name for the selected photos; naming them runs once the dialog is
        accepted (the dialog is window-modal and does not block)."""
        ids = self.selected_ids()
        if not ids or not self.ops.ready:
            self.ops.statusbar.showMessage("Select the photos to name first.", 5000)
            return
        if self.names is None:
            self.refresh()
        self.dialog = NameDialog(len(ids), self.names or [], self.window)
        self.dialog.accepted.connect(lambda d=self.dialog: self.name_photos(
            d.name(), ids, d.captions.isChecked(), d))
        self.dialog.open()

    def name_photos(self, name: str, ids: list[int], captions: bool,
                    dialog: NameDialog | None = None) -> None:
        def done(named) -> None:
            self.refresh()
            also = " and added to their captions" if named.in_captions else ""
            self.ops.statusbar.showMessage(
                f"@{named.name} names {named.photos:,} photos{also}: search for @{named.name} to "
                "find photos like them.", 15000)

        def failed(exc: BaseException) -> None:  # the name or the photos refused: ask again
            if dialog is not None:
                dialog.show_problem(error_text(exc))
                dialog.open()
            else:
                self.ops.report_error("name photos", exc)

        self.ops.call("name_photos", name, ids, add_to_captions=captions, name="name photos",
                      writes=True, changes=CAPTIONS if captions else None, log_failures=False,
                      done=done, failed=failed)


class NameCompletion(QObject):
    """Completes ``@name`` in the search field: typing ``@m`` offers @mia, @max…"""

    def __init__(self, field: QLineEdit, load, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.field = field
        self.load = load  # asks for the library's names; set_names brings them
        self.loaded = False
        self.model = QStringListModel([], self)
        self.completer = QCompleter(self.model, self)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setWidget(field)
        self.completer.activated.connect(self.insert)
        field.textEdited.connect(self._typed)

    def set_names(self, names: list[str]) -> None:
        self.loaded = True
        self.model.setStringList(names)
        if self.field.hasFocus():
            self._typed("")

    def _typed(self, _text: str) -> None:
        m = _TYPING_NAME.search(self.field.text()[: self.field.cursorPosition()])
        if m is not None and not self.loaded:
            self.load()  # the first @ typed: the names arrive in a moment
        if m is None or not self.model.stringList():
            self.completer.popup().hide()
            return
        self.completer.setCompletionPrefix(m.group(1))
        if self.completer.completionCount():
            self.completer.complete()
        else:
            self.completer.popup().hide()

    def insert(self, name: str) -> None:
        """Replace the ``@`` word being typed by the chosen name."""
        cursor = self.field.cursorPosition()
        before, after = self.field.text()[:cursor], self.field.text()[cursor:]
        m = _TYPING_NAME.search(before)
        if m is None:
            return
        before = before[: m.start(1)] + name
        self.field.setText(before + after)
        self.field.setCursorPosition(len(before))
