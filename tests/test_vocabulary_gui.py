"""One vocabulary (t = diffusion step, k = Langevin iteration from 0, sliders (t, k)), the canvas note,
colour bars and generation from noise in the explorer, in a real napari viewer (run under xvfb-run)."""
import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from test_explorer_gui import RUN_TIMEOUT_MS, docked, run_sample, t_k_axes  # noqa: E402

from lsdebm.teach.explain import TEXTS  # noqa: E402


def canvas_text(viewer) -> str:
    from napari_lsdebm._ui.legends import canvas_note
    return canvas_note(viewer)


def test_explorer_note_and_captions_follow_the_sliders(make_napari_viewer, qtbot, tiny_ckpts):
    viewer, w = docked(make_napari_viewer())
    layer = run_sample(qtbot, w, tiny_ckpts["lsdebm"], K=3, depth=2)
    t_axis, k_axis = t_k_axes(viewer)
    assert t_axis < k_axis  # sliders in the order (t, k)
    viewer.dims.set_current_step(t_axis, 3)  # frames f0 f1 f2 r1 r0: index 3 is reverse t=1
    viewer.dims.set_current_step(k_axis, 0)
    assert canvas_text(viewer) == "LSD-EBM · reverse t=1 · k=0/2 · decoded current latent z_t"
    assert "= reverse t=1" in w.plots.where.text() and "Langevin iteration k = 0" in w.plots.where.text()
    viewer.dims.set_current_step(k_axis, 2)
    w.clean_box.setChecked(True)
    assert canvas_text(viewer) == "LSD-EBM · reverse t=1 · k=2/2 · decoded predicted-clean latent z_t / ā_t"
    viewer.dims.set_current_step(t_axis, 1)
    assert canvas_text(viewer).startswith("LSD-EBM · forward t=1 · decoded")  # no k on a forward frame
    assert w.plots.ax_var.get_xlabel().startswith("diffusion step t")
    assert w.plots.ax_energy.get_ylabel() == "energy U (a.u.)"
    viewer.layers.remove(layer)
    assert canvas_text(viewer) == ""


def test_full_depth_and_generate_from_noise(make_napari_viewer, qtbot, tiny_ckpts):
    from lsdebm.explore.vocabulary import frame_names

    viewer, w = docked(make_napari_viewer())
    w.noise_panel.full_depth.setChecked(True)
    layer = run_sample(qtbot, w, tiny_ckpts["lsdebm"], K=2, depth=1)
    T = w.checkpoint_panel.checkpoints["lsdebm"].config.schedule.T
    traj = layer.data.traj
    assert traj.depth == T and frame_names(traj)[T] == f"forward t={T}"  # diffused to pure noise level
    w.noise_panel.generate_button.click()
    assert w.worker is not None, w.status.text()
    qtbot.waitUntil(lambda: w.worker is None, timeout=RUN_TIMEOUT_MS)
    gen = w.layer.data.traj
    assert gen is not traj and gen.metadata["generated"]
    assert frame_names(gen)[:2] == [f"forward t={T}", f"reverse t={T - 1}"] and gen.n_frames == T + 1
    first, last = gen.latent(1), gen.latent(gen.n_frames - 1)
    assert np.linalg.norm(first - last) > 0.3 * np.linalg.norm(last)  # noise at t=T-1, a sample at t=0
    assert np.abs(w.layer.data.frame(1, -1) - w.layer.data.frame(gen.n_frames - 1, -1)).max() > 0.05
    t_axis, _ = t_k_axes(viewer)
    viewer.dims.set_current_step(t_axis, 0)
    assert canvas_text(viewer).startswith(f"LSD-EBM from noise · forward t={T} · ")


def test_teaching_sliders_count_k_from_zero_and_explain_does_not_claim_descent(make_napari_viewer, qtbot):
    from napari_lsdebm.widgets.teach import TeachingWidget

    assert "downhill" not in TEXTS["generate"] and "not a descent" in TEXTS["generate"]
    assert "Boltzmann" in TEXTS["generate"] and "rise" in TEXTS["generate"]
    viewer = make_napari_viewer()
    widget = TeachingWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.n.setValue(1)
    widget.every.setValue(1)
    for m in ("ebm", "lebm"):
        widget.use[m].setChecked(False)
    widget.generate()
    qtbot.waitUntil(lambda: widget.generate_button.isEnabled(), timeout=300_000)
    assert tuple(viewer.dims.axis_labels)[:2] == ("t", "k")
    viewer.dims.current_step = (3, 0, 0, 0)
    assert "Langevin iteration k = 0 of" in widget.explain.toPlainText()  # slider k = 0 reads k = 0
    assert "k = 0 of" in canvas_text(viewer) and "t = 3" in canvas_text(viewer)
    assert widget.plots.cursor_positions()[1] == 0.0
    viewer.dims.current_step = (3, 4, 0, 0)
    assert "k = 4 of" in canvas_text(viewer)
    from napari_lsdebm._ui.legends import NOTE_LINE_CHARS, canvas_overlay

    note = canvas_overlay(viewer, "text")  # wrapped so a 1280 px window's canvas shows all of it
    assert note.font_size <= 12 and all(len(line) <= NOTE_LINE_CHARS for line in note.text.split("\n")), note.text


def test_landscape_sliders_t_then_k_with_colour_bar_and_axes(make_napari_viewer, qtbot):
    from napari_lsdebm._ui.legends import canvas_overlay
    from napari_lsdebm.widgets.landscape import LandscapeWidget

    viewer = make_napari_viewer()
    widget = LandscapeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.n.setValue(4)
    widget.start()
    qtbot.waitUntil(lambda: widget.run is not None, timeout=120_000)
    assert tuple(viewer.dims.axis_labels) == ("t", "k", "z2", "z1")
    assert canvas_overlay(viewer, "axes").visible  # z1 and z2 labelled on the canvas
    assert viewer.layers["landscape"].colorbar.visible
    assert not widget.colour_bar.isHidden() and widget.colour_bar.label.startswith("energy")
    viewer.dims.current_step = (4, 0, 0, 0)
    assert "Step t = 4" in widget.explain.toPlainText() and "k = 0 of" in widget.explain.toPlainText()
    assert canvas_text(viewer).startswith("2-D toy · reverse t=4 · k=0/")
    contours = viewer.layers["contours"].data
    assert contours.shape == viewer.layers["landscape"].data.shape and contours.max() == 1.0
