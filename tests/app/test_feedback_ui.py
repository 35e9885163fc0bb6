"""Marking results from the grid: W takes a photo out of the search's results, R marks one right
(the cell shows a tick and the grid stays on it), the same key again takes the mark back."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.app.conftest import WAIT_MS, wait_for_results

QUERY = "a dog"


def _search(qtbot, w) -> None:
    qtbot.keyClicks(w.search.field, QUERY)
    qtbot.keyClick(w.search.field, Qt.Key.Key_Return)
    wait_for_results(qtbot, w, text=QUERY)


def _press(qtbot, w, row: int, key) -> None:
    w.grid.setFocus()
    w.grid.setCurrentIndex(w.results.index(row))
    qtbot.keyClick(w.grid, key)


def test_wrong_and_right_marks_re_rank_the_results_at_once(qtbot, tiny_window, tiny_lib):
    w = tiny_window
    said: list[str] = []  # every status message (each stays only a few seconds)
    w.statusbar.messageChanged.connect(said.append)
    _search(qtbot, w)
    ids = [w.results.hit(r).photo_id for r in range(w.results.rowCount())]
    wrong = ids[1]
    _press(qtbot, w, 1, Qt.Key.Key_W)
    qtbot.waitUntil(lambda: wrong not in [w.results.hit(r).photo_id
                                          for r in range(w.results.rowCount())], timeout=WAIT_MS)
    assert any("Marked wrong" in m for m in said)
    assert tiny_lib.feedback_for(QUERY) == ([], [wrong])

    right_row = w.results.rowCount() - 1
    right = w.results.hit(right_row).photo_id
    _press(qtbot, w, right_row, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: w.results.marks.get(right) is True, timeout=WAIT_MS)
    row = w.results.row_of(right)
    assert row < right_row  # it moved up
    assert w.grid.current_hit().photo_id == right  # and the grid stayed on it
    assert w.results.index(row).data(w.results.MarkRole) is True  # the cell shows the tick
    assert QUERY in tiny_lib.captions(right)  # a caption pair for the next fine-tune

    _press(qtbot, w, row, Qt.Key.Key_R)  # again: the mark is taken back
    qtbot.waitUntil(lambda: right not in w.results.marks, timeout=WAIT_MS)
    assert tiny_lib.feedback_for(QUERY) == ([], [wrong])


def test_a_search_with_no_words_takes_no_marks_and_says_why(qtbot, tiny_window, photos):
    w = tiny_window
    said: list[str] = []
    w.statusbar.messageChanged.connect(said.append)
    image = str(sorted(photos.iterdir())[0])
    w.search_with_image(image)
    wait_for_results(qtbot, w, image=image)
    _press(qtbot, w, 0, Qt.Key.Key_R)
    assert any("type what you are looking for" in m for m in said)


def test_a_right_mark_shows_in_the_preview_and_keeps_captions_being_typed(qtbot, tiny_window,
                                                                          tiny_lib):
    """A right mark is a caption of the photo: the preview of that photo shows it at once, so
    that saving the preview later never puts back the list without it; captions typed but not
    yet saved are saved first, and both are kept."""
    w = tiny_window
    _search(qtbot, w)
    pid = w.results.hit(2).photo_id
    _press(qtbot, w, 2, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: w.preview.current is not None
                    and w.preview.current.photo_id == pid, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: w.preview.caption_lines() == [QUERY], timeout=WAIT_MS)
    assert tiny_lib.captions(pid) == [QUERY]

    qtbot.waitUntil(lambda: w.results.marks.get(pid) is True, timeout=WAIT_MS)
    _press(qtbot, w, w.results.row_of(pid), Qt.Key.Key_R)  # taken back: the caption goes
    qtbot.waitUntil(lambda: w.preview.caption_lines() == [], timeout=WAIT_MS)
    assert tiny_lib.captions(pid) == []
    qtbot.waitUntil(lambda: pid not in w.results.marks, timeout=WAIT_MS)

    editor = w.preview.captions
    editor.setFocus()
    qtbot.keyClicks(editor, "my neighbour's dog")
    _press(qtbot, w, w.results.row_of(pid), Qt.Key.Key_R)  # with the caption still unsaved
    qtbot.waitUntil(lambda: w.preview.caption_lines() == ["my neighbour's dog", QUERY],
                    timeout=WAIT_MS)
    assert tiny_lib.captions(pid) == ["my neighbour's dog", QUERY]
    assert not w.preview.is_dirty()
