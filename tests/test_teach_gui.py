"""Teaching widgets in a real napari viewer (run under ``xvfb-run -a``)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from lsdebm.teach.toy import energy_grid  # noqa: E402


def test_teaching_sample_data(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-lsdebm", "teach_digits")
    layer = viewer.layers[-1]
    assert layer.data.shape == (169, 169) and 0.0 <= layer.data.min() and layer.data.max() <= 1.0


def generated(viewer, qtbot, widget_type):
    """A docked teaching widget that has generated 4 digits per method, recording every 10th iteration."""
    widget = widget_type(viewer)
    viewer.window.add_dock_widget(widget)
    widget.n.setValue(4)
    widget.every.setValue(10)
    widget.generate()
    qtbot.waitUntil(lambda: widget.generate_button.isEnabled(), timeout=300_000)
    return widget


def test_generate_side_by_side_and_scrub(make_napari_viewer, qtbot):
    from napari_lsdebm.widgets.teach import METHODS, TeachingWidget

    viewer = make_napari_viewer()
    widget = generated(viewer, qtbot, TeachingWidget)
    layers = [layer for layer in viewer.layers if layer.name.startswith("teach:")]
    assert [layer.metadata["teach_method"] for layer in layers] == list(METHODS)
    shapes = {layer.data.shape for layer in layers}
    assert len(shapes) == 1  # same (t, k, y, x) for every method: the sliders line up
    n_t, n_k, h, w = shapes.pop()
    assert n_t == 10 and n_k == 3 and h == w == 2 * 16 + 1  # T = 10 steps, k in {10, 20, 30}, 2x2 grid
    xs = [layer.translate[-1] for layer in layers]
    assert xs == sorted(xs) and len(set(xs)) == 3  # side by side, no overlap
    assert all(0.0 <= float(np.min(layer.data)) and float(np.max(layer.data)) <= 1.0 for layer in layers)
    assert tuple(viewer.dims.axis_labels) == ("t", "k", "y", "x")
    # final frame (t = 0, last k) of LSD-EBM is the decoded sample grid
    lsd = widget.frames["lsdebm"]
    np.testing.assert_allclose(layers[2].data[0, -1, :16, :16], lsd.samples[0])
    # scrubbing moves the plot cursors and the Explain text
    viewer.dims.current_step = (5, 1, 0, 0)  # recorded iteration 20 is k = 19 counted from 0
    assert "t = 5" in widget.explain.toPlainText() and "k = 19" in widget.explain.toPlainText()
    s, k = widget.plots.cursor_positions()
    assert (s, k) == (widget.plots.traj.n_frames - 1 - 5, 19)
    widget.plot_method.setCurrentIndex(0)  # EBM: a single Langevin chain
    assert widget.plots.traj.depth == 1
    assert "Algorithm 3" in widget.explain.toPlainText()


def test_teaching_beside_a_5d_trajectory_reads_its_own_sliders(make_napari_viewer, qtbot):
    """With the explorer's (t, k, z, y, x) trajectory in the viewer, napari lines the teaching layers up with
    world axes 1-4: Explain and the plots follow those sliders (they read axes 0-1, another layer's)."""
    from napari_lsdebm.widgets.teach import TeachingWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 2, 4, 4, 4), np.float32), name="a 5-dim trajectory")
    widget = generated(viewer, qtbot, TeachingWidget)
    assert tuple(viewer.dims.axis_labels)[1:] == ("t", "k", "y", "x")
    assert widget.current_tk() == (0, 2)  # the final frame, on the teaching layers' own axes
    viewer.dims.current_step = (2, 5, 1, 0, 0)
    assert widget.current_tk() == (5, 1)
    assert "t = 5" in widget.explain.toPlainText() and "k = 19" in widget.explain.toPlainText()


def test_generate_needs_a_method(make_napari_viewer):
    from napari_lsdebm.widgets.teach import TeachingWidget

    widget = TeachingWidget(make_napari_viewer())
    for box in widget.use.values():
        box.setChecked(False)
    widget.generate()
    assert "at least one" in widget.status.text() and widget.worker is None


def test_landscape_contours_particles_and_toggles(make_napari_viewer, qtbot):
    from napari_lsdebm.widgets.landscape import EXTENT, GRID, LandscapeWidget, display_energy

    viewer = make_napari_viewer()
    widget = LandscapeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.n.setValue(8)
    widget.start()
    qtbot.waitUntil(lambda: widget.run is not None, timeout=120_000)
    run = widget.run
    T, K1 = run.y.shape[:2]
    assert {"landscape", "contours", "particles", "focused particle", "z_{t+1}"} <= {ly.name for ly in viewer.layers}
    assert tuple(viewer.dims.axis_labels) == ("t", "k", "z2", "z1")  # (t, k) as in every view
    assert viewer.layers["particles"].data.shape == (K1 * T * 8, 4)
    assert viewer.layers["landscape"].data.shape[:2] == (T, K1)
    assert len(viewer.layers["contours"].data) > 0
    # the drawn landscape is the energy of eq. (2) of the focused particle, rescaled per t
    t = 3
    inside = int(np.argmin(np.abs(run.z_next[t]).max(axis=1)))  # a particle whose z_{t+1} is on screen
    widget.focus.setValue(inside)
    direct = energy_grid(widget.model, run.z_next[t, inside], t, float(run.sigma[t]), "both", EXTENT, GRID).values
    np.testing.assert_allclose(viewer.layers["landscape"].data[t, 0], display_energy(direct[::-1]), atol=1e-6)
    # toggles: learned alone, quadratic alone; never both off
    widget.quadratic.setChecked(False)
    learned = energy_grid(widget.model, run.z_next[t, inside], t, float(run.sigma[t]), "learned", EXTENT, GRID).values
    np.testing.assert_allclose(viewer.layers["landscape"].data[t, 0], display_energy(learned[::-1]), atol=1e-6)
    widget.learned.setChecked(False)
    assert widget.quadratic.isChecked() and widget.terms() == "quadratic"
    quad = viewer.layers["landscape"].data[t, 0]
    centre = np.unravel_index(np.argmin(quad), quad.shape)  # the bowl's bottom is at z_{t+1}
    step = (EXTENT[1] - EXTENT[0]) / (GRID - 1)
    np.testing.assert_allclose([EXTENT[0] + centre[1] * step, EXTENT[3] - centre[0] * step],
                               run.z_next[t, inside], atol=step)
    # scrubbing t updates the explanation with sigma_{t+1}
    viewer.dims.current_step = (t, 2, 0, 0)
    text = widget.explain.toPlainText()
    assert f"sigma_{t + 1} = {run.sigma[t]:.3f}" in text and "quadratic bowl only" in text
    # focusing another particle moves the ring to its z_{t+1}
    other = (inside + 1) % 8
    widget.focus.setValue(other)
    ring = viewer.layers["z_{t+1}"].data
    np.testing.assert_allclose(ring[t, 2:], [-run.z_next[t, other, 1], run.z_next[t, other, 0]], atol=1e-6)
