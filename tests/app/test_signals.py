"""The Qt binding the app runs on keeps Python's reference counts right when signals are emitted.

PySide6 6.12.0 gives back a reference to ``True`` or ``False`` it never took on every emit; on
Python 3.11 the interpreter aborts once the count reaches zero ("bool_dealloc"), which took a few
thousand thumbnails of scrolling in the library view. pyproject.toml keeps that version out; this
catches any other that does the same.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    happened = Signal(object)


def test_emitting_signals_leaves_the_reference_counts_of_true_and_false_alone(qtbot):
    emitter = _Emitter()
    got = []
    emitter.happened.connect(got.append)
    before = sys.getrefcount(True), sys.getrefcount(False)
    for i in range(2000):
        emitter.happened.emit(i)
    after = sys.getrefcount(True), sys.getrefcount(False)
    assert len(got) == 2000
    assert abs(after[0] - before[0]) < 50 and abs(after[1] - before[1]) < 50, (before, after)
