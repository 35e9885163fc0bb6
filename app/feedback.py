"""Marking results right or wrong for the search on screen (keys R and W, the context menu, the
Edit menu): the engine keeps each mark (engine.feedback), the results re-rank at once with the
grid staying on the photo the person was at, and the next fine-tune learns from the marks."""

from __future__ import annotations

from PySide6.QtCore import QObject

from .operations import CAPTIONS
from .workers import error_text


def mark_job(library, query: str, photo_ids: list[int], right: bool | None) -> int:
    """(runs in a worker) The same mark on each photo; how many were marked."""
    for pid in photo_ids:
        library.mark(query, pid, right)
    return len(photo_ids)


class FeedbackActions(QObject):
    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window

    def query(self) -> str | None:
        shown = self.window.shown
        return shown.text if shown is not None and shown.text.strip() else None

    def mark(self, right: bool) -> None:
        """Mark the selected photos right (or wrong) for the search on screen; marking a photo
        the way it is already marked takes the mark back."""
        w = self.window
        query = self.query()
        if query is None:
            w.statusbar.showMessage("Marks teach Chikaku the words of a search: type what you "
                                    "are looking for, then mark its results.", 8000)
            return
        hits = w.grid.selected_hits() or ([w.grid.current_hit()] if w.grid.current_hit()
                                          else [])
        if not hits:
            return
        ids = [h.photo_id for h in hits]
        already = w.results.marks.get(ids[0]) == right and all(
            w.results.marks.get(i) == right for i in ids)
        value = None if already else right
        current = w.grid.current_hit()
        request = w.shown
        # captions being edited are saved first: a right mark adds one, and the preview then
        # shows the photo's captions as they are after it
        w.preview.save_if_edited()

        def done(n: int) -> None:
            w.keep_place(current.photo_id if current is not None and value is not False
                         else None)
            w.run_search(request)
            what = ("Mark taken back" if value is None else
                    f"Marked {'right' if right else 'wrong'}")
            w.statusbar.showMessage(
                f"{what} for “{query}” ({n} photo{'s' if n != 1 else ''}): the results are "
                "re-ranked, and the next fine-tune learns from it.", 8000)

        w.ops.call(mark_job, query, ids, value, name="mark results", writes=True,
                   changes=CAPTIONS, done=done,
                   failed=lambda exc: w.statusbar.showMessage(
                       f"Could not save the mark: {error_text(exc)}", 10000))

    def refresh(self) -> None:
        """The marks of the search on screen, for the grid to show."""
        w = self.window
        query = self.query()
        if query is None:
            w.results.set_marks({})
            return
        request = w.shown

        def show(marks: tuple[list[int], list[int]]) -> None:
            if w.shown is request:  # still the search on screen
                right, wrong = marks
                w.results.set_marks({**{p: True for p in right}, **{p: False for p in wrong}})

        w.ops.call("feedback_for", query, name="marks", done=show)
