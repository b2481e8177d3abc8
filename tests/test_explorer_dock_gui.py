"""The explorer dock as a person sees it (run under xvfb-run): it fits a 1280x800 window, runs replace
each other's layers, Cancel restores the layers, the plots dock lives and dies with the explorer,
and T/K/step size follow the method's checkpoint."""
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from test_explorer_gui import RUN_TIMEOUT_MS, docked, run_sample, t_k_axes  # noqa: E402


def run_again(qtbot, w, K: int) -> None:
    w.run_panel.K.setValue(K)
    w.run()
    assert w.worker is not None, w.status.text()
    qtbot.waitUntil(lambda: w.worker is None, timeout=RUN_TIMEOUT_MS)


def overflowing(widget) -> list[str]:
    """Visible descendants whose right edge lies past ``widget``'s right edge (cut off on screen)."""
    from qtpy.QtCore import QPoint
    from qtpy.QtWidgets import QWidget

    out = []
    for child in widget.findChildren(QWidget):
        if child.isVisible() and not child.isWindow():
            right = child.mapTo(widget, QPoint(child.width(), 0)).x()
            if right > widget.width():
                out.append(f"{type(child).__name__} {child.objectName() or getattr(child, 'text', str)()!r}: "
                           f"{right} > {widget.width()}")
    return out


def on_screen(widget) -> bool:
    """Shown, and not scrolled or clipped entirely out of sight."""
    return widget.isVisible() and not widget.visibleRegion().isEmpty()


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_dock_fits_the_window_and_keeps_run_controls_in_sight(make_napari_viewer, qtbot, tiny_ckpts, size):
    viewer, w = docked(make_napari_viewer(show=True))
    viewer.window._qt_window.resize(*size)
    assert w.plots_dock is not None and w.plots_dock.isHidden()  # no empty plot panel before a run
    assert w.checkpoint_panel.load(tiny_ckpts["lsdebm"]) is not None
    qtbot.wait(100)
    panel = w.run_panel
    for control in (panel.run_button, panel.cancel_button, panel.progress, panel.status, w.status):
        assert on_screen(control) or control in (panel.status, w.status), control
    assert on_screen(panel.run_button) and on_screen(panel.cancel_button) and on_screen(panel.progress)
    assert not overflowing(w), overflowing(w)
    facts = w.checkpoint_panel.facts.text()
    for text in ("LSD-EBM", "16³ at 8 mm", "t* / T", "K", "step size"):
        assert text in facts, text
    assert not w.checkpoint_panel.info.isVisible() and "{" not in facts  # the full record waits for Details…
    w.checkpoint_panel.details_button.click()
    qtbot.wait(100)
    assert w.checkpoint_panel.info.isVisible() and "sha256" in w.checkpoint_panel.info.text()
    assert on_screen(panel.run_button) and not overflowing(w), overflowing(w)


def note_width(viewer) -> float:
    """Width in screen pixels of the canvas note as drawn (napari's vispy text node)."""
    from napari_lsdebm._ui.legends import canvas_overlay

    canvas = viewer.window._qt_viewer.canvas
    node = canvas._viewer_overlay_to_visual[canvas_overlay(viewer, "text")][0].node
    return node.get_width_height()[0]


def test_run_at_1280x800_keeps_the_window_size_and_the_canvas_note_fits(make_napari_viewer, qtbot, tiny_ckpts):
    from napari_lsdebm._ui.legends import NOTE_LINE_CHARS, canvas_overlay

    viewer, w = docked(make_napari_viewer(show=True))
    window = viewer.window._qt_window
    window.resize(1280, 800)
    run_sample(qtbot, w, tiny_ckpts["lsdebm"], K=4, depth=2)
    viewer.dims.set_current_step(t_k_axes(viewer)[0], 3)  # a reverse frame: the longest note (with k)
    w.clean_box.setChecked(True)  # "decoded predicted-clean latent z_t / ā_t", longer still
    qtbot.wait(300)
    assert w.plots_dock.isVisible() and w.isVisible()
    assert window.height() <= 800 and window.width() <= 1280, window.size()  # the plots did not grow it
    assert w.plots_dock.minimumSizeHint().height() <= 170, w.plots_dock.minimumSizeHint()
    note = canvas_overlay(viewer, "text")
    assert note.visible and note.font_size <= 12 and "k=" in note.text
    assert all(len(line) <= NOTE_LINE_CHARS for line in note.text.split("\n")), note.text
    canvas = viewer.window._qt_viewer.canvas.native
    assert 0 < note_width(viewer) <= canvas.width() - 20, (note_width(viewer), canvas.width())  # not cut off


def test_two_runs_leave_one_layer_set_and_keep_makes_two(make_napari_viewer, qtbot, tiny_ckpts):
    viewer, w = docked(make_napari_viewer())
    run_sample(qtbot, w, tiny_ckpts["lsdebm"], K=4, depth=2)
    assert not w.plots_dock.isHidden()  # the plots appear with the first run
    first = [lay.name for lay in viewer.layers]
    run_again(qtbot, w, K=2)
    names = [lay.name for lay in viewer.layers]
    assert names == first and not any("[" in n for n in names), names
    assert sum(n == "LSD-EBM trajectory" for n in names) == 1
    assert viewer.dims.nsteps[t_k_axes(viewer)[1]] == 2  # the k slider follows the new run
    assert w.layer.data.shape[1] == 2 and w.plots.traj is w.layer.data.traj
    w.keep_box.setChecked(True)
    run_again(qtbot, w, K=2)
    trajectories = [lay for lay in viewer.layers if lay.name.startswith("LSD-EBM trajectory")
                    and lay.__class__.__name__ == "Image"]
    assert len(trajectories) == 2 and w.layer is trajectories[-1]


def test_cancel_restores_the_layers_before_run(make_napari_viewer, qtbot, tiny_ckpts, monkeypatch):
    from lsdebm.sampling.kernels import switch as fast

    monkeypatch.setitem(fast.STATE, "enabled", False)  # one event per Langevin iteration
    viewer, w = docked(make_napari_viewer())
    run_sample(qtbot, w, tiny_ckpts["lsdebm"], K=2, depth=1)
    before = [(lay.name, lay.visible) for lay in viewer.layers]
    w.run_panel.K.setValue(100_000)
    w.run()
    qtbot.waitUntil(lambda: w.run_panel.progress.value() > 5, timeout=RUN_TIMEOUT_MS)
    assert not any(lay.visible for lay in w.run_layers.layers())  # the preview is not drawn over old results
    w.cancel()
    qtbot.waitUntil(lambda: w.worker is None, timeout=RUN_TIMEOUT_MS)
    qtbot.waitUntil(lambda: "live preview" not in [lay.name for lay in viewer.layers], timeout=30_000)
    assert [(lay.name, lay.visible) for lay in viewer.layers] == before


def test_closing_the_explorer_closes_its_plots(make_napari_viewer, qtbot, tiny_ckpts):
    viewer, w = docked(make_napari_viewer())
    run_sample(qtbot, w, tiny_ckpts["lsdebm"], K=2, depth=1)
    assert "LSD-EBM plots" in viewer.window._wrapped_dock_widgets
    viewer.window.remove_dock_widget(w)
    qtbot.wait(50)
    assert "LSD-EBM plots" not in viewer.window._wrapped_dock_widgets and w.plots_dock is None
    ta = t_k_axes(viewer)[0]
    cursor = w.plots.cursor_positions()
    viewer.dims.set_current_step(ta, 0)  # the sliders move on; the closed explorer no longer follows them
    assert w.plots.cursor_positions() == cursor


def test_reopened_trajectory_plots_agree_with_sliders(make_napari_viewer, qtbot, tiny_ckpts, tmp_path):
    viewer, w = docked(make_napari_viewer())
    layer = run_sample(qtbot, w, tiny_ckpts["lsdebm"], K=3, depth=2)
    path = tmp_path / "run.npz"
    layer.save(str(path), plugin="napari-lsdebm")
    viewer.layers.clear()
    again = viewer.open(str(path), plugin="napari-lsdebm")[1]
    qtbot.wait(50)
    ta, ka = t_k_axes(viewer)
    step = viewer.dims.current_step
    assert w.layer is again and w.position() == (step[ta], step[ka])
    assert w.plots.cursor_positions()[0] == step[ta]
    viewer.dims.set_current_step(ta, 1)
    assert w.plots.cursor_positions()[0] == 1


def test_method_switch_restores_checkpoint_settings_and_keeps_user_values(explorer_bare, tiny_ckpts):
    w = explorer_bare
    panel = w.run_panel
    assert panel.method.itemData(0) == "lsdebm"
    bundled = [w.checkpoint_panel.combo.itemText(i) for i in range(w.checkpoint_panel.combo.count())]
    if bundled and bundled[0].startswith(("lsdebm", "lebm", "vae", "reconnet")):
        assert bundled[0].startswith("lsdebm-"), bundled  # LSD-EBM first in the checkpoint list
    w.checkpoint_panel.load(tiny_ckpts["lsdebm"])
    lsdebm_defaults = (panel.depth.value(), panel.K.value(), panel.step_size.value())
    w.checkpoint_panel.load(tiny_ckpts["lebm"])  # switches the method to LEBM with its defaults
    lebm_defaults = panel.K.value(), panel.step_size.value()
    panel.set_kind("lsdebm")
    assert (panel.depth.value(), panel.K.value(), panel.step_size.value()) == lsdebm_defaults
    panel.K.setValue(5000)  # the user's K for this LSD-EBM checkpoint
    panel.set_kind("lebm")
    assert (panel.K.value(), panel.step_size.value()) == lebm_defaults  # not 5000 posterior steps
    panel.set_kind("lsdebm")
    assert panel.K.value() == 5000
    w.checkpoint_panel.load(tiny_ckpts["lsdebm"])  # loading it again keeps what the user set for it
    assert panel.K.value() == 5000


@pytest.fixture
def explorer_bare(make_napari_viewer):
    return docked(make_napari_viewer())[1]


def test_progress_text_gives_events_and_time_left():
    from napari_lsdebm._ui.run_panel import progress_text

    assert progress_text(412, 1200, 4.12) == "412/1200 events, ~8 s left"
    assert progress_text(0, 1200, 1.0) == "0/1200 events"
    assert progress_text(10, 1000, 60.0) == "10/1000 events, ~99 min left"
    assert progress_text(11, 1000, 0.01, since=1) == "11/1000 events, ~1 s left"  # timed from event 1
    assert progress_text(1, 1000, 0.0, since=1) == "1/1000 events"


def test_time_left_is_timed_from_the_first_event_not_from_run(monkeypatch, qtbot):
    """Preparing the input and the first model call took seconds; the 600 events after them take
    milliseconds each: the estimate follows the events (a QA run read "~8 min left" for a 4 s run)."""
    from lsdebm.explore import Progress
    from lsdebm.explore.record import RunStep
    from napari_lsdebm._ui import run_panel as module

    clock = [100.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: clock[0])
    panel = module.RunPanel()
    qtbot.addWidget(panel)
    panel.set_running(True)
    clock[0] += 3.0  # preparing, encoding
    panel.show_progress(Progress(1, 610, "encode", RunStep(t=0)))
    assert panel.status.text() == "encode t=0: 1/610 events"
    clock[0] += 0.1  # 10 events in 0.1 s: 600 more take 6 s
    panel.show_progress(Progress(11, 610, "reverse", RunStep(t=1, k=9)))
    assert panel.status.text().endswith("11/610 events, ~6 s left")
    panel.set_running(False)
    panel.set_running(True)  # the next run times its own first event
    clock[0] += 50.0
    panel.show_progress(Progress(5, 610, "encode", RunStep(t=0)))
    assert panel.status.text() == "encode t=0: 5/610 events"


def test_plots_draw_a_new_trajectory_once(qtbot, tiny_ckpts):
    """A new run clears the plots and draws its trajectory: one full matplotlib drawing (about 0.15-0.3 s on
    the GUI thread here), not one for the cleared figure and another for the new one; and a full drawing for
    another reason (a resize) makes the one waiting for the sliders to rest unnecessary."""
    import numpy as np

    from lsdebm.explore import drain, make_settings, record_run
    from lsdebm.runtime.checkpoint import load_checkpoint
    from napari_lsdebm._ui.plots import REDRAW_DELAY_MS, TrajectoryPlots

    x = np.zeros((16, 16, 16), np.uint8)
    x[5:11, 5:11, 5:11] = 1
    traj = drain(record_run(load_checkpoint(tiny_ckpts["lsdebm"]), x, make_settings("lsdebm", K=2))).trajectory
    plots = TrajectoryPlots()
    qtbot.addWidget(plots)
    plots.show()
    drawn = []
    plots.canvas.mpl_connect("draw_event", lambda event: drawn.append(event))
    plots.set_trajectory(traj)
    qtbot.waitUntil(lambda: len(drawn) == 1 and not plots._redraw.isActive(), timeout=10_000)
    qtbot.wait(2 * REDRAW_DELAY_MS)
    drawn.clear()
    plots.set_trajectory(None)  # the previous run's layers are removed, then the new run's are added
    plots.set_trajectory(traj)
    qtbot.waitUntil(lambda: len(drawn) == 1 and not plots._redraw.isActive(), timeout=10_000)
    qtbot.wait(2 * REDRAW_DELAY_MS)
    assert len(drawn) == 1
    plots.set_position(3, 1, force=True)  # a redraw waits for the sliders to rest...
    assert plots._redraw.isActive()
    plots.canvas.draw()  # ...and a drawing meanwhile shows the change
    assert not plots._redraw.isActive()
    qtbot.wait(2 * REDRAW_DELAY_MS)
    assert len(drawn) == 2 and plots.cursor_positions()[0] == 3.0
