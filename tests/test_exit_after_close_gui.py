"""Closing the explorer dock mid-run (or not), then leaving Python with the viewer open, must not crash or print a
traceback (run under xvfb-run).

The closed dock's widget outlived its dock as a parentless, Python-owned QWidget, so PyQt's exit clean-up deleted
it while walking SIP's table of wrappers; napari's application-wide event filter wrapped its children during that
deletion, SIP moved the full table, and the walk read freed memory (:mod:`napari_lsdebm._ui.closed_docks`). A
segfault kills the test process, so the session runs in a child Python (with ``PYTHONMALLOC=debug``, freed memory
is overwritten and a walk that reads it crashes for sure) and the tests look at how it ended.
"""
import textwrap
import threading
import time

import pytest
from child_python import PUMP, run_child, told

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

CHILD_TIMEOUT_S = 300  # napari start-up and two short runs on the shared 2-core machine

# The check is registered after PyQt's exit clean-up (imported with QtCore) and before the plugin's (imported with
# the dock), so it runs after the plugin's and before PyQt's: what it finds alive there, PyQt deletes mid-walk.
CLOSE_MID_RUN = textwrap.dedent("""
    import atexit, faulthandler, sys, threading, time
    faulthandler.enable()
    from qtpy.QtWidgets import QApplication

    closed = []

    def dangling_at_exit():
        left = []
        for widget in closed:
            try:
                if widget.parent() is None:
                    left.append(type(widget).__name__)
            except RuntimeError:  # deleted: nothing for PyQt to delete
                pass
        threads = sorted(t.name for t in threading.enumerate() if t.name.startswith("lsdebm"))
        print("dangling:", left, "threads:", threads, flush=True)

    atexit.register(dangling_at_exit)

""") + PUMP + textwrap.dedent("""

    viewer = napari.Viewer(show=True)
    for i in range(int(sys.argv[2])):
        _, w = viewer.window.add_plugin_dock_widget("napari-lsdebm", "LSD-EBM explorer")
        if i == 0:
            w.open_sample()
        assert w.checkpoint_panel.load(sys.argv[1]) is not None, w.checkpoint_panel.error.text()
        w.run_panel.K.setValue(100_000)
        w.run()
        wait_until(lambda: w.run_panel.progress.value() > 1, 120)
        job = w.worker
        viewer.window.remove_dock_widget(w)  # closed while it samples
        assert job.cancelled()
        wait_until(lambda: w.worker is None, 120)
        pump(0.3)
        assert "live preview" not in [lay.name for lay in viewer.layers]
        closed += [w, w.plots]  # kept, as a script keeps what it added
    print("closed", len(closed) // 2, "explorers mid-run", flush=True)
    # leaves Python with the viewer open: atexit, then PyQt's clean-up
""")


def test_exit_with_the_viewer_open_after_closing_the_explorer_mid_run(tiny_ckpts):
    # PYTHONMALLOC=debug overwrites freed memory: reading it after SIP moved its table crashes for sure
    proc = run_child(["-c", CLOSE_MID_RUN, str(tiny_ckpts["lsdebm"]), "2"], CHILD_TIMEOUT_S, PYTHONMALLOC="debug")
    assert "closed 2 explorers mid-run" in proc.stdout, told(proc)
    assert "dangling: [] threads: []" in proc.stdout, told(proc)  # deleted and stopped before PyQt's clean-up
    assert proc.returncode == 0, told(proc)


LEAVE_MID_RUN = PUMP + textwrap.dedent("""

    viewer = napari.Viewer(show=True)
    _, w = viewer.window.add_plugin_dock_widget("napari-lsdebm", "LSD-EBM explorer")
    w.open_sample()
    assert w.checkpoint_panel.load(sys.argv[1]) is not None, w.checkpoint_panel.error.text()
    w.run_panel.K.setValue(100_000)
    w.run()
    wait_until(lambda: w.run_panel.progress.value() > 1, 120)
    print("leaving mid-run", flush=True)
    # leaves Python with the run going and the explorer docked: atexit, then PyQt's clean-up
""")


def test_leaving_python_mid_run_with_the_explorer_docked_is_quiet(tiny_ckpts):
    """The run's worker ended after PyQt's clean-up had deleted its signals: a traceback at every such exit."""
    proc = run_child(["-c", LEAVE_MID_RUN, str(tiny_ckpts["lsdebm"])], CHILD_TIMEOUT_S)
    assert "leaving mid-run" in proc.stdout, told(proc)
    assert "has been deleted" not in proc.stderr and "Traceback" not in proc.stderr, told(proc)
    assert proc.returncode == 0, told(proc)


def test_a_closed_preview_ends_its_thread(make_napari_viewer):
    from napari_lsdebm._ui.preview import LivePreview

    preview = LivePreview(make_napari_viewer())
    started = threading.Event()
    preview.jobs.submit(lambda: (started.set(), time.sleep(0.3)))
    assert started.wait(10)
    assert not preview.close()  # on the GUI thread: no wait; the running decode finishes first
    assert preview.close(5.0)
    assert not any(t.name == "lsdebm-preview" for t in threading.enumerate())
    preview.jobs.submit(lambda: None)  # closed: nothing runs any more
    assert preview.jobs.idle()
