"""Removing a hidden trajectory layer must not crash the process (run under xvfb-run).

napari deletes a removed layer's OpenGL objects outside a paint, in whatever context Qt left current; with Mesa
(llvmpipe, softpipe) that segfaulted in the canvas's next ``glDrawElements`` once a hidden 5-dim layer was removed
(:mod:`napari_lsdebm._ui.gl_context`). A segfault kills the test process, so the canvas-drawing parts run in a
child Python and the tests look at how it ended.
"""
import textwrap

import numpy as np
import pytest
from child_python import PUMP, run_child, told

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

CHILD_TIMEOUT_S = 400  # a tiny run plus napari start-up on the shared 2-core machine

EXPLORER_RUN = PUMP + textwrap.dedent("""
    viewer = napari.Viewer(show=True)
    _, w = viewer.window.add_plugin_dock_widget("napari-lsdebm", "LSD-EBM explorer")
    w.open_sample()
    assert w.checkpoint_panel.load(sys.argv[1]) is not None, w.checkpoint_panel.error.text()
    w.render_combo.setCurrentText(sys.argv[2])
    w.run_panel.K.setValue(2)
    w.run_panel.depth.setValue(1)
    w.run()
    wait_until(lambda: w.worker is None, 300)
    pump(1)
    trajectory = w.layer
    assert trajectory is not None and trajectory.ndim == 5, w.status.text()
    recon = next(lay for lay in viewer.layers if lay.name.endswith("reconstruction"))
    recon.visible = True  # something stays on the canvas to be drawn after the removal
    pump(0.5)
    for lay in w.run_layers.layers():  # hidden as a new run hides the last one's results (its mesh too)
        lay.visible = lay is recon
    pump(1)
    viewer.layers.remove(trajectory)  # 5 -> 3 dims; the next paint segfaulted
    pump(2)
    assert viewer.dims.ndim == 3
    print("survived", flush=True)
    os._exit(0)  # the explorer's decoder threads need not be joined here
""")

PLAIN_NAPARI = PUMP + textwrap.dedent("""
    from napari_lsdebm._ui.gl_context import keep_canvas_current

    viewer = napari.Viewer(show=True)
    if sys.argv[1] == "guarded":  # "plain": napari alone (segfaults with Mesa)
        assert keep_canvas_current(viewer)
    labels = viewer.add_labels((np.random.default_rng(0).random((32,) * 3) > 0.5).astype(np.uint8), visible=False)
    image = viewer.add_image(np.random.default_rng(1).random((3, 2, 32, 32, 32), dtype=np.float32),
                             rendering="iso")
    viewer.dims.ndisplay = 3
    pump(1)
    labels.visible = True
    pump(0.5)
    image.visible = False
    pump(1)
    viewer.layers.remove(image)
    pump(2)
    print("survived", flush=True)
    os._exit(0)
""")


REVIEW_OVERLAP = PUMP + textwrap.dedent("""
    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-lsdebm", "phantom_pair")
    _, review = viewer.window.add_plugin_dock_widget("napari-lsdebm", "Review metrics and overlap")
    wait_until(lambda: review.worker is None and "regions" in review.status.text(), 120)
    pump(0.5)
    review.show_overlap()  # hides the prediction
    pump(1)
    pred, ref = review.pred_combo.layer(), review.ref_combo.layer()
    assert not pred.visible
    viewer.layers.remove(ref)
    pump(1.5)
    viewer.layers.remove(pred)  # the next paint segfaulted without the hook
    pump(2)
    print("survived", flush=True)
    os._exit(0)
""")


def run_script(script: str, *args: str):
    return run_child(["-c", script, *args], CHILD_TIMEOUT_S)


def ended_well(proc) -> bool:
    return proc.returncode == 0 and "survived" in proc.stdout


@pytest.mark.parametrize("render", ["volume", "mesh"])
def test_removing_the_hidden_trajectory_after_a_run_does_not_crash(tiny_ckpts, render):
    proc = run_script(EXPLORER_RUN, str(tiny_ckpts["lsdebm"]), render)
    assert ended_well(proc), told(proc)


def test_removing_a_hidden_prediction_after_reviews_overlap_view_does_not_crash():
    """3D Labels in a 2D view, no dims lost: every dock guards its viewer, not only the explorer's."""
    proc = run_script(REVIEW_OVERLAP)
    assert ended_well(proc), told(proc)


def test_the_guard_alone_keeps_napari_from_crashing_on_a_hidden_5d_layer():
    """The same crash without the plugin's docks: napari alone, and napari with :func:`keep_canvas_current`."""
    proc = run_script(PLAIN_NAPARI, "guarded")
    assert ended_well(proc), told(proc)


def test_the_explorer_guards_its_viewer(make_napari_viewer):
    from napari_lsdebm._ui.gl_context import _guarded, keep_canvas_current, scene_canvas

    viewer = make_napari_viewer()
    viewer.window.add_plugin_dock_widget("napari-lsdebm", "LSD-EBM explorer")
    canvas = scene_canvas(viewer)
    assert canvas is not None and canvas in _guarded
    connected = len(viewer.layers.events.removing.callbacks)
    assert keep_canvas_current(viewer)  # once per viewer: a second dock adds no second hook
    assert len(viewer.layers.events.removing.callbacks) == connected
    layer = viewer.add_labels(np.zeros((4, 4, 4), np.uint8))
    viewer.layers.remove(layer)  # the hook runs before napari's clean-up without a shown canvas too
    assert layer not in viewer.layers
