"""Naming photos from the app: select photos, "Name these…", then @name finds them."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel
from PySide6.QtWidgets import QDialogButtonBox

from tests.app.conftest import WAIT_MS, wait_for_results


def _search(qtbot, w, text: str) -> None:
    w.search.field.clear()
    qtbot.keyClicks(w.search.field, text)
    w.search.search_now()
    wait_for_results(qtbot, w, text=text)


def _name_menu_action(w):
    w.selection_menu(w.results.hit(0))
    return next(a for a in w.context_menu.actions() if a.text().startswith("Name th"))


def test_photos_named_in_the_app_are_found_by_their_name(qtbot, bundled_window):
    w = bundled_window
    lib = w.library
    _search(qtbot, w, "a dog")
    chosen = [w.results.hit(r).photo_id for r in range(3)]
    selection = w.grid.selectionModel()
    selection.clearSelection()
    for r in range(3):
        selection.select(w.results.index(r), QItemSelectionModel.SelectionFlag.Select)
    action = _name_menu_action(w)
    assert action.text() == "Name these…"
    try:
        action.trigger()
        dialog = w.namer.dialog
        assert dialog.isVisible() and "3 photos" in dialog.intro.text()
        # a name the engine refuses: the dialog stays, with the reason
        dialog.field.setText("the dogs")
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
        qtbot.waitUntil(lambda: dialog.problem.isVisible() and dialog.isVisible(),
                        timeout=WAIT_MS)
        assert "cannot be a name" in dialog.problem.text()
        assert lib.named_things() == []
        dialog.field.setText("Dogs")
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
        qtbot.waitUntil(lambda: [t.name for t in lib.named_things()] == ["Dogs"],
                        timeout=WAIT_MS)
        assert set(lib.named_things()[0].photo_ids) == set(chosen)
        assert not any("Dogs" in lib.captions(i) for i in chosen)  # not asked for
        qtbot.waitUntil(lambda: "@Dogs names 3 photos" in w.statusbar.currentMessage(),
                        timeout=WAIT_MS)

        # typing @ offers the names
        w.search.field.clear()
        w.search.field.setFocus()
        qtbot.keyClicks(w.search.field, "@do")
        completer = w.namer.completion.completer
        qtbot.waitUntil(lambda: completer.completionCount() == 1, timeout=WAIT_MS)
        assert completer.currentCompletion() == "Dogs"
        w.namer.completion.insert("Dogs")
        assert w.search.field.text() == "@Dogs"
        completer.popup().hide()
        w.search.search_now()
        wait_for_results(qtbot, w, text="@Dogs")
        shown = [h.photo_id for h in w.results.hits()]
        assert set(chosen) <= set(shown)
    finally:
        if lib.names.get("dogs") is not None:
            lib.delete_name("dogs")
