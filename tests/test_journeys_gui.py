"""The three users' journeys through the docks, driven as a person would (run under xvfb-run).

* Inspect latents: real sample → explorer with the bundled LSD-EBM → Run → scrub t and k in 3D →
  save the trajectory → reopen it in a fresh viewer.
* Teach: generate from noise and full depth in the explorer, digits side by side, the landscape.
* Review a region: real sample → Compare → Review (overlap, table, ROI) → export NIfTI, STL and an
  animation, each with its provenance sidecar.

Settings are small (K = 2, a quick LEBM copy) so that each journey takes well under a minute.
"""
import json

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from test_explorer_dock_gui import on_screen  # noqa: E402
from test_explorer_gui import RUN_TIMEOUT_MS, docked, drawn_surface, show_frame, t_k_axes  # noqa: E402

REAL_INPUT = "LQ 5 mm sagittal (L3, VerSe 2019, CC BY-SA 4.0)"
REAL_TRUTH = "GT (L3, VerSe 2019, CC BY-SA 4.0)"
TIMEOUT = 240_000


def canvas_text(viewer) -> str:
    from napari_lsdebm._ui.legends import canvas_note

    return canvas_note(viewer)


def load_bundled(w, name: str = "lsdebm-default") -> None:
    """Choose ``name`` in the checkpoint list and press Load."""
    from lsdebm.runtime.checkpoint import bundled_checkpoints

    panel = w.checkpoint_panel
    panel.combo.setCurrentIndex(panel.combo.findData(str(bundled_checkpoints()[name])))
    panel.load_button.click()
    assert panel.checkpoints, panel.error.text()


def press_run(qtbot, w, button=None) -> None:
    """Click Run (or ``button``) and wait for the worker to finish."""
    (button or w.run_panel.run_button).click()
    assert w.worker is not None, w.status.text()
    qtbot.waitUntil(lambda: w.worker is None, timeout=RUN_TIMEOUT_MS)
    assert w.layer is not None, w.status.text()


def cursors_agree(viewer, w) -> tuple[int, int]:
    """The plots' cursors and the canvas note say what the (t, k) sliders say; returns (s, k)."""
    from lsdebm.explore.vocabulary import frame_name, k_number

    ta, ka = t_k_axes(viewer)
    s, k = viewer.dims.current_step[ta], viewer.dims.current_step[ka]
    traj = w.plots.traj
    assert w.position() == (s, k)
    assert w.plots.cursor_positions() == (float(s), float(k_number(traj, k)))
    assert frame_name(traj, s) in canvas_text(viewer)
    return s, k


def world_box(layer, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The viewer-coordinate bounding box of some of ``layer``'s data points (every 20th)."""
    world = np.array([layer.data_to_world(p) for p in points[::20]], float)[:, -3:]
    return world.min(axis=0), world.max(axis=0)


def share_inside(source, other) -> float:
    """The share of ``source``'s foreground voxels (every 50th) that land in ``other``'s foreground where the
    viewer draws them."""
    data = np.asarray(other.data)
    hits = []
    for index in np.argwhere(np.asarray(source.data) > 0)[::50]:
        there = np.rint(np.asarray(other.world_to_data(source.data_to_world(index)))).astype(int)
        hits.append(bool(np.all((there >= 0) & (there < data.shape)) and data[tuple(there)] > 0))
    return float(np.mean(hits))


def claims_descent(text: str) -> bool:
    """True when an Explain text calls Langevin sampling a descent (the 'not a descent' caveat aside)."""
    text = text.lower().replace("not a descent", "")
    return any(word in text for word in ("descent", "descend", "downhill", "always lowers"))


def test_inspect_latents(make_napari_viewer, qtbot, tmp_path):
    from napari.layers import Surface

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    viewer.open_sample("napari-lsdebm", "real_pair")
    viewer, w = docked(viewer)
    w.input_combo.setCurrentText(REAL_INPUT)
    load_bundled(w)
    w.run_panel.K.setValue(2)
    qtbot.wait(100)
    panel = w.run_panel
    for control in (panel.run_button, panel.cancel_button, panel.progress):
        assert on_screen(control), control
    panel.run_button.click()
    qtbot.wait(50)
    assert panel.cancel_button.isEnabled() and not panel.run_button.isEnabled()
    qtbot.waitUntil(lambda: "running LSD-EBM" in w.status.text(), timeout=RUN_TIMEOUT_MS)  # once the input is prepared
    assert on_screen(w.status)
    qtbot.waitUntil(lambda: w.worker is None, timeout=RUN_TIMEOUT_MS)
    layer = w.layer
    assert viewer.dims.ndisplay == 3 and "frames" in w.status.text()
    surface = drawn_surface(viewer, layer)
    assert isinstance(surface, Surface) and not layer.visible  # the canvas draws a mesh, not a volume
    # the model-frame layers lie on the input (they were 10-20 mm off, at the origin, before session 17)
    source = viewer.layers[REAL_INPUT]
    assert share_inside(source, viewer.layers["LSD-EBM reconstruction"]) > 0.6  # 0.78 (a 2 mm model after K = 2)
    lo, hi = world_box(source, np.argwhere(np.asarray(source.data) > 0))
    ta, ka = t_k_axes(viewer)  # the mesh of the frame under the sliders (on a loaded machine an earlier one
    show_frame(qtbot, viewer, layer, viewer.dims.current_step[ta], viewer.dims.current_step[ka])  # shows first)
    mesh_lo, mesh_hi = world_box(surface, np.asarray(surface.data[0]))
    np.testing.assert_allclose(mesh_lo, lo, atol=8.0)  # a process tip short by up to 6.4 mm
    np.testing.assert_allclose(mesh_hi, hi, atol=8.0)
    # exported, the mesh lands in the scanner's mm, around the input file's voxels (it was model-frame mm)
    from lsdebm.review.export import world_mesh
    from napari_lsdebm._ui.layer_records import surface_mesh

    mesh, affine = surface_mesh(surface)
    exported = world_mesh(mesh, affine).vertices
    voxels = np.argwhere(np.asarray(source.data) > 0) @ source.metadata["affine"][:3, :3].T
    voxels += source.metadata["affine"][:3, 3]
    np.testing.assert_allclose(exported.min(axis=0), voxels.min(axis=0), atol=8.0)
    np.testing.assert_allclose(exported.max(axis=0), voxels.max(axis=0), atol=8.0)
    # napari cannot slice a turned layer in 2D (its slices come out empty): there it is only moved, its
    # centre kept where it was; back in 3D it is turned onto the input again
    rec = viewer.layers["LSD-EBM reconstruction"]
    centre = np.argwhere(np.asarray(rec.data) > 0).mean(axis=0)  # the vertebra's centroid stays put
    in_3d = np.asarray(rec.data_to_world(centre))
    viewer.dims.ndisplay = 2
    np.testing.assert_allclose(np.asarray(rec.affine.affine_matrix)[:3, :3], np.eye(3))
    np.testing.assert_allclose(np.asarray(layer.affine.affine_matrix)[2:5, 2:5], np.eye(3))
    np.testing.assert_allclose(rec.data_to_world(centre), in_3d, atol=1e-6)
    viewer.dims.ndisplay = 3
    assert share_inside(source, rec) > 0.6
    n_s, n_k = layer.data.shape[:2]
    meshes = {}
    for pos in ((n_s - 1, n_k - 1), (n_s - 2, 0), (0, n_k - 1)):  # result, first k of reverse t=1, encoding
        show_frame(qtbot, viewer, layer, *pos)
        meshes[pos] = surface.data[0].copy()
        assert len(surface.data[1]) > 100  # a vertebra-sized surface
        assert cursors_agree(viewer, w) == pos
    assert not np.array_equal(meshes[(n_s - 1, n_k - 1)], meshes[(0, n_k - 1)])  # t moves the surface
    # a second run replaces the first: one result set
    names = [lay.name for lay in viewer.layers]
    press_run(qtbot, w)
    assert [lay.name for lay in viewer.layers] == names
    assert sum(isinstance(lay, Surface) and lay.name.endswith("(mesh)") for lay in viewer.layers) == 1
    # save, then reopen in a fresh viewer with the plugin's reader
    path = w.save_trajectory(str(tmp_path / "run.npz"))
    assert path.endswith("run.npz") and "saved" in w.status.text()
    # `lsdebm view FILE run.npz`: the reopened run lies on its input again (it opened about 1 m away)
    from lsdebm.data.nifti import write_volume
    from napari_lsdebm.launch import open_viewer

    source_file = write_volume(tmp_path / "input.nii.gz", np.asarray(source.data), source.metadata["affine"])
    reopened, _ = open_viewer([str(path), str(source_file)], show=False)
    try:
        run_rec = next(lay for lay in reopened.layers if lay.name.startswith("reconstruction ("))
        assert share_inside(reopened.layers["input"], run_rec) > 0.6
    finally:
        reopened.close()
    viewer.close()
    viewer2, w2 = docked(make_napari_viewer())
    again = viewer2.open(path, plugin="napari-lsdebm")[1]
    qtbot.wait(50)
    assert w2.layer is again and again.data.shape[:2] == (n_s, n_k)
    assert viewer2.dims.ndisplay == 3
    cursors_agree(viewer2, w2)
    ta, ka = t_k_axes(viewer2)
    viewer2.dims.set_current_step(ta, 1)
    viewer2.dims.set_current_step(ka, 0)
    assert cursors_agree(viewer2, w2) == (1, 0)


def test_teach(make_napari_viewer, qtbot):
    from lsdebm.explore.vocabulary import frame_names
    from lsdebm.teach.explain import TEXTS
    from napari_lsdebm._ui.legends import canvas_overlay
    from napari_lsdebm.widgets.landscape import LandscapeWidget
    from napari_lsdebm.widgets.teach import METHODS, TeachingWidget

    viewer, w = docked(make_napari_viewer())
    load_bundled(w)
    w.run_panel.K.setValue(2)
    press_run(qtbot, w, w.noise_panel.generate_button)  # Algorithm 3 from z_T ~ N(0, I)
    gen = w.layer
    T = w.checkpoint_panel.checkpoints["lsdebm"].config.schedule.T
    assert frame_names(gen.data.traj)[:2] == [f"forward t={T}", f"reverse t={T - 1}"]
    first = show_frame(qtbot, viewer, gen, 1, 1)
    last = show_frame(qtbot, viewer, gen, gen.data.shape[0] - 1, 1)
    assert np.abs(first - last).max() > 0.05  # noise becomes a vertebra
    assert "from noise" in canvas_text(viewer)
    # full depth on the real input: diffused to t = T, then the whole reverse chain
    viewer.open_sample("napari-lsdebm", "real_pair")
    w.input_combo.setCurrentText(REAL_INPUT)
    w.noise_panel.full_depth.setChecked(True)
    press_run(qtbot, w)
    traj = w.layer.data.traj
    assert traj.depth == T and frame_names(traj)[T + 1] == f"reverse t={T - 1}"
    first = show_frame(qtbot, viewer, w.layer, T + 1, 1)
    last = show_frame(qtbot, viewer, w.layer, traj.n_frames - 1, 1)
    assert not np.array_equal(first, last)
    # digits side by side
    teach = TeachingWidget(viewer)
    viewer.window.add_dock_widget(teach)
    teach.n.setValue(4)
    teach.every.setValue(10)
    teach.generate_button.click()
    qtbot.waitUntil(lambda: teach.generate_button.isEnabled(), timeout=300_000)
    digits = [lay for lay in viewer.layers if lay.name.startswith("teach:")]
    assert [lay.metadata["teach_method"] for lay in digits] == list(METHODS)
    xs = [lay.translate[-1] for lay in digits]
    assert xs == sorted(xs) and len(set(xs)) == len(digits)  # side by side
    assert not claims_descent(teach.explain.toPlainText()) and not claims_descent(TEXTS["generate"])
    # the energy landscape, in a viewer of its own
    viewer3 = make_napari_viewer()
    landscape = LandscapeWidget(viewer3)
    viewer3.window.add_dock_widget(landscape)
    landscape.n.setValue(4)
    landscape.run_button.click()
    qtbot.waitUntil(lambda: landscape.run is not None, timeout=120_000)
    assert tuple(viewer3.dims.axis_labels) == ("t", "k", "z2", "z1")
    assert canvas_overlay(viewer3, "axes").visible
    assert viewer3.layers["landscape"].colorbar.visible and landscape.colour_bar.label.startswith("energy")
    viewer3.dims.current_step = (3, 2, 0, 0)
    text = landscape.explain.toPlainText()
    assert "Step t = 3" in text and "k = 2 of" in text and not claims_descent(text)


def test_review_a_region(make_napari_viewer, qtbot, tmp_path):
    import imageio.v3 as iio
    import pyvista as pv

    from lsdebm.data.nifti import read_volume
    from lsdebm.evaluation.metrics import compute_metrics
    from lsdebm.review.roi import region_metrics
    from lsdebm.runtime.checkpoint import bundled_checkpoints, with_sampling_settings
    from napari_lsdebm._ui.pickers import mask_of
    from napari_lsdebm.widgets.compare import SHOW_MODES, CompareWidget
    from napari_lsdebm.widgets.export import ExportWidget
    from napari_lsdebm.widgets.review import ReviewWidget
    from napari_lsdebm.widgets.surface import SurfaceWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-lsdebm", "real_pair")
    truth = viewer.layers[REAL_TRUTH]
    compare = CompareWidget(viewer)
    viewer.window.add_dock_widget(compare)
    assert compare.input_combo.currentText() == REAL_INPUT and compare.reference_combo.layer() is truth
    quick = with_sampling_settings(bundled_checkpoints()["lebm-default"], tmp_path / "lebm-quick.safetensors",
                                   {"lebm.posterior_steps": 5}, "journey test: a quick LEBM")
    compare.paths["lebm"].edit.setText(str(quick))  # Browse… to a quicker LEBM; the others stay bundled
    compare.K.setValue(2)
    compare.run_button.click()
    assert compare.worker is not None and not compare.run_button.isEnabled()
    qtbot.waitUntil(lambda: compare.worker is None, timeout=TIMEOUT)
    assert compare.comparison is not None, compare.status.text()
    compare.mode.setCurrentText(SHOW_MODES[1])
    assert not compare.legend.isHidden() and compare.legend.classes() == ["TP", "FP", "FN"]
    compare.mode.setCurrentText(SHOW_MODES[0])
    result = next(lay for lay in viewer.layers if lay.name.startswith("LSD-EBM · DSC"))
    # Review: the newest result against the truth (never the truth against itself)
    review = ReviewWidget(viewer)
    viewer.window.add_dock_widget(review)
    assert review.pred_combo.layer() is result and review.ref_combo.layer() is truth
    review.overlap_button.click()
    assert "overlap: " + result.name + " vs " + truth.name in viewer.layers
    assert review.legend.classes() == ["TP", "FP", "FN"]
    qtbot.waitUntil(lambda: review.worker is None and review.table.rowCount() == 1, timeout=TIMEOUT)
    pred, ref = mask_of(result), mask_of(truth)
    spacing = tuple(np.asarray(truth.scale)[-3:])
    assert review.table.item(0, 0).text() == "whole volume"
    assert review.rows[0].metrics == pytest.approx(compute_metrics(pred, ref, spacing))
    review.roi_button.click()  # New ROI box: a Shapes layer in rectangle mode
    roi = viewer.layers["ROI"]
    assert roi.mode == "add_rectangle" and review.roi_combo.layer() is roi
    assert viewer.dims.ndisplay == 2 and result.visible  # rectangles are drawn on a slice of the result
    z = pred.shape[0] // 2
    roi.add_rectangles(np.array([[[z, 20, 30], [z, 20, 80], [z, 60, 80], [z, 60, 30]]], float))
    qtbot.waitUntil(lambda: review.worker is None and review.table.rowCount() == 2, timeout=TIMEOUT)
    assert review.table.item(1, 0).text().startswith("ROI")
    box = (slice(0, pred.shape[0]), slice(20, 61), slice(30, 81))
    assert review.rows[1].metrics == pytest.approx(region_metrics(pred, ref, spacing, box))
    # export the result: NIfTI, and its surface as STL, each with a provenance sidecar
    surface_dock = SurfaceWidget(viewer)
    viewer.window.add_dock_widget(surface_dock)
    # as Review, the newest result against the truth (a QA pass found the truth as mask and no reference)
    assert surface_dock.mask_combo.layer() is result and surface_dock.ref_combo.layer() is truth
    surface_dock.button.click()
    qtbot.waitUntil(lambda: surface_dock.worker is None, timeout=TIMEOUT)
    mesh_layer = viewer.layers[f"surface: {result.name}"]
    export = ExportWidget(viewer)
    viewer.window.add_dock_widget(export)
    # the newest result and the surface just built, not the first layers listed (the input; a QA pass)
    assert export.mask_combo.layer() is result and export.mesh_combo.layer() is mesh_layer
    nifti, side = export.save_mask(tmp_path / "lsdebm.nii.gz")
    np.testing.assert_allclose(read_volume(nifti).affine, truth.metadata["affine"])
    assert json.loads(side.read_text())["checkpoints"]
    for fmt, box in export.formats.items():
        box.setChecked(fmt == "stl")
    files, side = export.save_mesh(tmp_path / "lsdebm_surface.stl")
    assert [f.suffix for f in files] == [".stl"] and pv.read(files[0]).n_cells == len(mesh_layer.data[1])
    assert json.loads(side.read_text())["export"]["frame"].startswith("world")
    # an animation of the explorer's trajectory: estimate first, then progress, sidecar naming the layer
    viewer, w = docked(viewer)
    w.input_combo.setCurrentText(REAL_INPUT)
    load_bundled(w)
    w.run_panel.K.setValue(2)
    press_run(qtbot, w)
    export.anim_combo.set_layer(w.layer)
    export.order.setCurrentText("t (diffusion step)")
    assert export.estimate.text().startswith(f"{w.layer.data.shape[0]} frames, about")
    progress = []
    export.anim_progress.valueChanged.connect(progress.append)
    job = export.start_animation(tmp_path / "traj.gif")
    assert job is not None and export.anim_cancel.isEnabled() and not export.anim_button.isEnabled()
    qtbot.waitUntil(lambda: export.animation is None, timeout=TIMEOUT)
    assert "Saved" in export.status.text(), export.status.text()
    assert max(progress) == w.layer.data.shape[0]  # the bar counted the captured frames
    assert len(iio.imread(tmp_path / "traj.gif", index=None)) == w.layer.data.shape[0]
    record = json.loads((tmp_path / "traj.provenance.json").read_text())
    assert record["export"]["layer"] == w.layer.name
