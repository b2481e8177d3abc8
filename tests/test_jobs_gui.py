"""A dock's job that ends after the dock's widgets were deleted (the viewer closed) ends quietly."""
from __future__ import annotations

import time

from qtpy.QtWidgets import QCheckBox

from napari_lsdebm._ui.jobs import start_job


def _delete(widget) -> None:
    try:
        from qtpy import sip
    except ImportError:  # PySide
        import shiboken6

        shiboken6.delete(widget)
        return
    sip.delete(widget)


def test_a_job_ending_after_its_widget_was_deleted_does_not_raise_into_qt(qtbot):
    box = QCheckBox()
    ended = []

    def on_done(outcome):
        ended.append(outcome.status)
        box.isChecked()  # what a dock's callback does: touch its widgets

    start_job(lambda job: time.sleep(0.3) or 1, on_done, what="test")
    _delete(box)
    qtbot.waitUntil(lambda: bool(ended), timeout=10_000)  # an exception here would fail the test (pytest-qt)
    assert ended == ["done"]


def test_other_errors_in_a_callback_still_surface(qtbot):
    ended = []

    def on_done(outcome):
        ended.append(outcome.status)
        raise RuntimeError("a bug in the callback")

    with qtbot.captureExceptions() as caught:
        start_job(lambda job: 1, on_done, what="test")
        qtbot.waitUntil(lambda: bool(ended), timeout=10_000)
    assert caught and "a bug in the callback" in str(caught[0][1])  # a real bug is not swallowed


def test_progress_still_queued_at_cancel_is_not_delivered(qtbot):
    """A dock's status said "Cancelled." and then, from an item queued before the click, "Running VAE..." for good."""
    import threading

    delivered, ended, reported = [], [], threading.Event()

    def work(job):
        job.report("before")
        reported.wait(10)  # the GUI thread has not delivered "before" yet: it is still queued
        job.report("queued")
        return 1

    job = start_job(work, lambda outcome: ended.append(outcome.status), delivered.append, what="test")
    time.sleep(0.2)  # both reports end up queued behind this (the GUI thread processes no events here)
    reported.set()
    time.sleep(0.3)
    job.cancel()
    qtbot.waitUntil(lambda: bool(ended), timeout=10_000)
    assert delivered == [] and ended == ["done"]  # the work had finished; nothing reached the dock after Cancel
