"""GUI tests of the compare / review / surface / uncertainty / export widgets (run under xvfb-run -a)."""
import json

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from lsdebm.data.phantoms import grid_affine  # noqa: E402
from lsdebm.evaluation.metrics import compute_metrics  # noqa: E402
from lsdebm.review.overlap import OVERLAP_COLORS, TP  # noqa: E402
from lsdebm.review.roi import region_metrics  # noqa: E402

TIMEOUT = 240_000  # ms; the 2-core CI machine may be busy


@pytest.fixture
def viewer(make_napari_viewer, tiny_pair):
    """A viewer with the tiny phantom as napari-lsdebm layers: HQ, LQ (with slice gaps), parts."""
    from napari_lsdebm._ui.layers import volume_layer

    hq, _, parts = tiny_pair
    lq = hq.copy()
    lq[:, :, ::3] = 0
    viewer = make_napari_viewer()
    affine = grid_affine(16, 8.0)
    for data, name in ((hq, "HQ"), (lq, "LQ"), (parts, "parts")):
        d, kwargs, kind = volume_layer(data, affine, name)
        getattr(viewer, f"add_{kind}")(d, **kwargs)
    return viewer


def wait_worker(qtbot, widget):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT)


def compare_widget(viewer, tiny_ckpts, source: str, reference: str):
    """A docked Compare widget on the tiny checkpoints, with its input and ground truth chosen."""
    from napari_lsdebm.widgets.compare import CompareWidget

    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget)
    for kind, row in widget.paths.items():
        row.edit.setText(str(tiny_ckpts[kind]))
    widget.input_combo.set_layer(viewer.layers[source])
    widget.reference_combo.set_layer(viewer.layers[reference])
    return widget


def test_compare_grid_shows_all_methods(viewer, qtbot, tiny_ckpts):
    from napari.layers import Surface

    from napari_lsdebm._ui.legends import canvas_note, show_canvas_note
    from napari_lsdebm._ui.pickers import grid_of
    from napari_lsdebm.widgets.compare import COMPARE_KEY, SHOW_MODES

    widget = compare_widget(viewer, tiny_ckpts, "LQ", "HQ")
    show_canvas_note(viewer, "the explorer's note of a trajectory now hidden")
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.comparison is not None and widget.worker is None, timeout=TIMEOUT)
    assert canvas_note(viewer) == ""  # the grid takes the canvas: a note would cover the first cell's title
    visible = [lay for lay in viewer.layers if lay.visible]
    names = [lay.name.split(" · ")[0] for lay in visible]
    assert names == ["raw input", "ReconNet", "VAE", "LEBM", "LSD-EBM", "ground truth"]
    assert all(" · DSC " in lay.name for lay in visible[:5])
    grid = grid_of(viewer)
    assert grid.enabled and grid.actual_shape(viewer.layers) == (2, 3)
    positions = [grid.position(viewer.layers.index(lay), viewer.layers) for lay in visible]
    assert len(set(positions)) == 6  # one cell each, one shared camera and dims
    assert viewer.dims.ndisplay == 3
    assert all(lay.name_overlay.visible for lay in visible)
    # cell titles fit a cell of a 1280 px window: small font, short names ("raw input · DSC 0.92")
    assert all(lay.name_overlay.font_size <= 8 and len(lay.name) <= 20 for lay in visible), [
        (lay.name, lay.name_overlay.font_size) for lay in visible]
    # 3D cells are meshes by default (deliberately, since the mesh default): each mask stays beside its
    # surface as a hidden layer for slices, Review and export
    assert widget.render.currentText() == "mesh" and all(isinstance(lay, Surface) for lay in visible)
    mask = viewer.layers[f"{visible[0].name} (mask)"]
    assert not mask.visible and mask.metadata["mask_kind"] == "mask"
    np.testing.assert_allclose(mask.scale, (8.0, 8.0, 8.0))
    assert np.array_equal(mask.data, viewer.layers["LQ"].data != 0)
    vae = visible[2]
    records_of_vae = vae.metadata["provenance"]
    records = records_of_vae["checkpoints"]
    assert [c["kind"] for c in records if c["role"] == "method"] == ["vae"]
    assert records[-1]["role"] == "slab interpolation"  # the bundled SlabNet, as in `lsdebm reconstruct`
    # overlap display mode: every method cell becomes a TP/FP/FN map against the ground truth
    widget.mode.setCurrentText(SHOW_MODES[1])
    cells = [lay for lay in viewer.layers if COMPARE_KEY in lay.metadata and lay.visible]
    assert set(np.unique(cells[0].data)) <= {0, 1, 2, 3} and 3 in np.unique(cells[0].data)  # LQ misses voxels
    # a TP/FP/FN map is no mask (nonzero = prediction or truth): Export and Review take the hidden mask beside it,
    # with the method's provenance and role (an Export of the map was written as the method's mask)
    from napari_lsdebm._ui.pickers import is_mask_layer
    from napari_lsdebm._ui.roles import pick_prediction

    assert not any(is_mask_layer(lay) for lay in cells[:-1])
    vae_mask = viewer.layers[f"{cells[2].name} (mask)"]
    assert is_mask_layer(vae_mask) and not vae_mask.visible and set(np.unique(vae_mask.data)) <= {0, 1}
    assert vae_mask.metadata["provenance"] == cells[2].metadata["provenance"] == records_of_vae
    newest = pick_prediction(viewer.layers)
    assert newest.name.endswith(" (mask)") and is_mask_layer(newest)
    np.testing.assert_allclose(cells[0].colormap.map(np.array([TP]))[0], OVERLAP_COLORS[TP], atol=1e-6)
    assert not widget.legend.isHidden() and widget.legend.classes() == ["TP", "FP", "FN"]  # the colours' key
    widget.mode.setCurrentText(SHOW_MODES[0])
    assert widget.legend.isHidden()  # plain masks need no legend
    widget.toggle_grid()
    assert not grid.enabled
    # a slab model that does not exist: one line in the status, the shown comparison kept
    widget.slab.edit.setText("/nonexistent/slab.safetensors")
    widget.run_button.click()
    wait_worker(qtbot, widget)
    assert "Comparison failed" in widget.status.text() and "expected 'default'" in widget.status.text()
    assert widget.comparison is not None


def test_cancel_ends_with_the_comparison_cancelled(viewer, qtbot, tiny_ckpts, monkeypatch):
    """A QA pass saw "Cancelled." overwritten by a progress item queued before the click ("Running VAE...", for
    good, with Run enabled): the last word is the outcome's."""
    import time

    from napari_lsdebm.widgets import compare

    loader = compare.load_compare_checkpoints
    monkeypatch.setattr(compare, "load_compare_checkpoints", lambda sources: time.sleep(0.5) or loader(sources))
    widget = compare_widget(viewer, tiny_ckpts, "LQ", "HQ")
    widget.run_button.click()
    widget.cancel_button.click()
    assert widget.status.text() == "Cancelled."  # at once: asked
    wait_worker(qtbot, widget)
    qtbot.wait(200)  # anything still queued is delivered now
    assert widget.status.text() == "Comparison cancelled." and widget.comparison is None
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_compare_one_vertebra_of_a_label_map(viewer, qtbot, tiny_ckpts):
    """A label map as input (a spine): without a label the widget says to choose one; with one, every cell and
    the TP/FP/FN view are that structure, against the same label of a label-map ground truth."""
    from napari_lsdebm._ui.layers import volume_layer
    from napari_lsdebm.widgets.compare import COMPARE_KEY, SHOW_MODES

    lq, hq = np.asarray(viewer.layers["LQ"].data), np.asarray(viewer.layers["HQ"].data)
    spine, truth = 3 * (lq != 0).astype(np.int16), 3 * (hq != 0).astype(np.int16)
    for volume in (spine, truth):
        volume[0:2, 0:2, 0:2] = 9  # another structure of the map, in a corner
    affine = grid_affine(16, 8.0)
    for data, name in ((spine, "spine"), (truth, "spine truth")):
        data, kwargs, _ = volume_layer(data, affine, name)
        viewer.add_labels(data, **kwargs)
    widget = compare_widget(viewer, tiny_ckpts, "spine", "spine truth")
    widget.run_button.click()
    assert widget.worker is None and widget.comparison is None
    assert "holds 2 labels (3, 9); choose the structure" in widget.status.text()
    widget.label_spin.setValue(3)
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.comparison is not None and widget.worker is None, timeout=TIMEOUT)
    raw = widget.comparison.results[0]
    assert np.array_equal(raw.mask, lq != 0) and raw.metrics["dsc"] < 1.0
    np.testing.assert_array_equal(widget.comparison.reference, hq != 0)  # label 3 of the truth, not label 9
    widget.mode.setCurrentText(SHOW_MODES[1])
    cells = [lay for lay in viewer.layers if COMPARE_KEY in lay.metadata]
    assert not np.asarray(cells[0].data)[0:2, 0:2, 0:2].any()  # label 9 is neither compared nor missed


def test_compare_on_a_large_map_runs_on_the_structures_box_and_review_reads_the_whole_truth(viewer, qtbot,
                                                                                              tiny_ckpts):
    """One vertebra of a map much larger than it: the cells hold the box the comparison can touch, placed where
    the vertebra is, and Review scores a cell against the whole map's ground truth (cut to the cell's grid)."""
    from napari_lsdebm.widgets.review import ReviewWidget

    lq, hq = np.asarray(viewer.layers["LQ"].data), np.asarray(viewer.layers["HQ"].data)
    body, truth = np.zeros((48, 48, 48), np.int16), np.zeros((48, 48, 48), np.int16)
    body[30:46, 2:18, 28:44], truth[30:46, 2:18, 28:44] = 22 * (lq != 0), 22 * (hq != 0)
    body[2, 40, 2] = truth[2, 40, 2] = 9  # another structure, far away
    for data, name in ((body, "body"), (truth, "body truth")):
        viewer.add_labels(data, name=name, scale=(8.0, 8.0, 8.0), translate=(-40.0, 0.0, 16.0))
    widget = compare_widget(viewer, tiny_ckpts, "body", "body truth")
    widget.label_spin.setValue(22)
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.comparison is not None and widget.worker is None, timeout=TIMEOUT)
    cell = next(lay for lay in viewer.layers if lay.name.startswith("ReconNet") and lay.name.endswith("(mask)"))
    assert np.prod(cell.data.shape) < body.size / 2
    start = (np.asarray(cell.translate)[-3:] - (-40.0, 0.0, 16.0)) / 8.0  # whole voxels of the map
    assert np.allclose(start, np.round(start)) and np.all(start >= 0)
    lo = np.round(start).astype(int)
    np.testing.assert_array_equal(np.asarray(cell.data) != 0, widget.comparison.by_key()["reconnet"].mask != 0)
    assert (body[tuple(slice(a, a + n) for a, n in zip(lo, cell.data.shape))] == 22).sum() == (body == 22).sum()
    review = ReviewWidget(viewer)
    viewer.window.add_dock_widget(review)
    review.parts_combo.set_layer(None)
    review.pred_combo.set_layer(cell)
    review.ref_combo.set_layer(viewer.layers["body truth"])
    review.label_spin.setValue(22)
    qtbot.waitUntil(lambda: bool(review.rows) and review.worker is None, timeout=TIMEOUT)
    assert review.rows[0].metrics["dsc"] == pytest.approx(widget.comparison.by_key()["reconnet"].metrics["dsc"])


def test_compare_frames_one_vertebra_of_a_large_map(viewer):
    """One vertebra of a spine's map (whose layers span the whole map) fills its cell: the camera is centred on
    the voxels the cells hold and zoomed in by the ratio of the map's extent to theirs."""
    from napari_lsdebm._ui.pickers import camera_of
    from napari_lsdebm.widgets.compare import _lay_out_grid, _world_box

    viewer.layers.clear()  # the map alone sets the scene's extent
    big = np.zeros((100, 100, 100), np.uint8)
    big[70:80, 60:80, 65:75] = 1  # 10 x 20 x 10 voxels of 2 mm, far from the map's centre
    source = viewer.add_labels(big, name="spine map", scale=(2.0, 2.0, 2.0), translate=(10.0, 0.0, 0.0))
    lo, hi = _world_box(source, [big, np.zeros_like(big)])
    np.testing.assert_allclose(lo, [10 + 69.5 * 2, 59.5 * 2, 64.5 * 2])  # voxel edges: centres -/+ half a voxel
    np.testing.assert_allclose(hi, [10 + 79.5 * 2, 79.5 * 2, 74.5 * 2])
    assert _world_box(source, [np.zeros_like(big)]) is None
    _lay_out_grid(viewer, [source], 3)  # framed on the whole map
    whole_zoom = camera_of(viewer).zoom
    _lay_out_grid(viewer, [source], 3, (lo, hi))
    camera = camera_of(viewer)
    np.testing.assert_allclose(camera.center, (lo + hi) / 2)
    # the map is 200 mm across, the structure 40 mm: about 5x, less a tenth of room for the oblique view
    assert 4 * whole_zoom < camera.zoom < 5.5 * whole_zoom


def test_review_overlap_and_metrics_table(viewer, qtbot, tmp_path):
    from qtpy.QtWidgets import QApplication

    from napari_lsdebm.widgets.review import ReviewWidget

    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.ref_combo.layer() is viewer.layers["HQ"]  # guessed by name
    assert widget.parts_combo.layer() is viewer.layers["parts"]
    widget.pred_combo.set_layer(viewer.layers["LQ"])
    overlap = widget.show_overlap()
    hq, lq = viewer.layers["HQ"].data, viewer.layers["LQ"].data
    assert overlap.name == "overlap: LQ vs HQ"
    assert int((overlap.data == TP).sum()) == int(((lq > 0) & (hq > 0)).sum())
    assert list(overlap.features["class"]) == ["TN", "TP", "FP", "FN"]
    assert "TP" in widget.legend.text() and "FN" in widget.legend.text()
    assert widget.legend.classes() == ["TP", "FP", "FN"] and f"{int((overlap.data == TP).sum()):,} voxels" in \
        widget.legend.text()
    n_parts = len([v for v in np.unique(viewer.layers["parts"].data) if v])
    qtbot.waitUntil(lambda: widget.table.rowCount() == 1 + n_parts and widget.worker is None, timeout=TIMEOUT)
    assert widget.rows[0].metrics == pytest.approx(compute_metrics(lq, hq, (8.0, 8.0, 8.0)))
    assert widget.table.item(0, 0).text() == "whole volume"
    # a rectangle ROI drawn on one slice adds a row with the cropped metrics
    widget.new_roi()
    roi = viewer.layers["ROI"]
    roi.add_rectangles(np.array([[[8, 2, 3], [8, 2, 12], [8, 11, 12], [8, 11, 3]]], float))
    qtbot.waitUntil(lambda: widget.table.rowCount() == 2 + n_parts and widget.worker is None, timeout=TIMEOUT)
    box = (slice(0, 16), slice(2, 12), slice(3, 13))
    assert widget.rows[-1].metrics == pytest.approx(region_metrics(lq, hq, (8.0,) * 3, box))
    # selecting another Labels layer in the layer list makes it the prediction
    shifted = viewer.add_labels(np.roll(hq, 2, axis=1), name="shifted", scale=(8.0, 8.0, 8.0),
                                translate=viewer.layers["HQ"].translate)  # on HQ's grid, where it is drawn
    viewer.layers.selection.active = shifted
    qtbot.waitUntil(lambda: widget.rows and widget.rows[0].metrics["dsc"] == pytest.approx(
        compute_metrics(shifted.data, hq, 8.0)["dsc"]) and widget.worker is None, timeout=TIMEOUT)
    widget.copy()
    assert QApplication.clipboard().text().startswith("region\tvoxels\tDSC")
    csv = widget.save_csv(tmp_path / "table.csv")
    assert csv.read_text().count("\n") == len(widget.rows) + 1


def test_review_status_follows_renamed_layers(viewer, qtbot):
    """The status line names the prediction and the reference as they are called now, not as they were called
    when the table was computed (a rename does not recompute); a message said since is left alone."""
    from napari_lsdebm.widgets.review import ReviewWidget

    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.pred_combo.set_layer(viewer.layers["LQ"])
    widget.ref_combo.set_layer(viewer.layers["HQ"])
    qtbot.waitUntil(lambda: bool(widget.rows) and widget.worker is None and not widget._timer.isActive(),
                    timeout=TIMEOUT)  # computed, and no recompute pending
    n = len(widget.rows)
    assert widget.status.text() == f"LQ vs HQ: {n} regions"
    viewer.layers["LQ"].name = "my input"
    viewer.layers["HQ"].name = "my truth"
    assert widget.status.text() == f"my input vs my truth: {n} regions"
    assert widget.worker is None and not widget._timer.isActive()  # followed without a recompute
    viewer.layers["parts"].name = "my parts"  # not named in the summary
    assert widget.status.text() == f"my input vs my truth: {n} regions"
    widget.copy()
    viewer.layers["my input"].name = "input again"
    assert widget.status.text() == "Table copied."


def test_review_one_vertebra_against_a_spine_map(viewer, qtbot):
    """A VerSe spine as the reference of a one-vertebra result: refused without a label (a spine against one
    vertebra means nothing), scored against the chosen label with it, in the table and the overlap view."""
    from napari_lsdebm.widgets.review import ReviewWidget

    hq, lq = np.asarray(viewer.layers["HQ"].data), np.asarray(viewer.layers["LQ"].data)
    spine = 22 * (hq != 0).astype(np.int16)
    spine[:2, :2, :2] = 23  # the next vertebra, in a corner
    viewer.add_labels(spine, name="spine truth", scale=(8.0, 8.0, 8.0), translate=viewer.layers["HQ"].translate)
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.parts_combo.set_layer(None)
    widget.pred_combo.set_layer(viewer.layers["LQ"])
    widget.ref_combo.set_layer(viewer.layers["HQ"])
    widget.update_metrics()
    qtbot.waitUntil(lambda: bool(widget.rows) and widget.worker is None, timeout=TIMEOUT)
    widget.ref_combo.set_layer(viewer.layers["spine truth"])
    widget.update_metrics()
    assert widget.worker is None and "reference 'spine truth' holds 2 labels (22, 23)" in widget.status.text()
    assert widget.rows == [] and widget.table.rowCount() == 0  # not the previous pair's numbers
    widget.label_spin.setValue(22)
    qtbot.waitUntil(lambda: bool(widget.rows) and widget.worker is None, timeout=TIMEOUT)
    assert widget.rows[0].metrics == pytest.approx(compute_metrics(lq, hq, (8.0, 8.0, 8.0)))
    overlap = widget.show_overlap()
    assert not np.asarray(overlap.data)[:2, :2, :2].any()  # label 23 is not missed by a result of label 22


def test_surface_coloured_by_signed_distance(viewer, qtbot):
    from napari_lsdebm.widgets.surface import SurfaceWidget

    widget = SurfaceWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.mask_combo.set_layer(viewer.layers["LQ"])
    widget.ref_combo.set_layer(viewer.layers["HQ"])
    widget.smooth.setValue(5)
    viewer.layers["LQ"].visible = True
    viewer.dims.ndisplay = 2
    widget.build()
    qtbot.waitUntil(lambda: "surface: LQ" in viewer.layers and widget.button.isEnabled(), timeout=TIMEOUT)
    surface = viewer.layers["surface: LQ"]
    # a surface is a 3D object: the viewer leaves 2D, where only the slice's cut through it shows
    assert viewer.dims.ndisplay == 3 and "now in 3D" in widget.status.text()
    from napari_lsdebm._ui.placement import CAMERA_ANGLES
    assert tuple(viewer.camera.angles) == pytest.approx(CAMERA_ANGLES)  # seen obliquely, not face-on
    # drawn instead of the mask, whose volume would hide it in 3D; the status says so
    assert surface.visible and not viewer.layers["LQ"].visible and "Layer 'LQ' is hidden" in widget.status.text()
    vertices, faces, values = surface.data
    assert len(values) == len(vertices) and values.min() < 0  # LQ lies inside HQ: negative distances
    lo, hi = surface.contrast_limits
    assert lo == pytest.approx(-hi) and widget.colorbar.limits == pytest.approx((-hi, hi))
    assert not widget.colorbar.isHidden() and widget.colorbar.label == "signed distance to HQ (mm)"
    assert surface.metadata["frame"] == "grid-mm" and surface.colorbar.visible
    assert str(surface.colorbar.position).endswith("bottom_right")  # clear of the canvas note at the top
    from napari_lsdebm._ui.legends import canvas_note
    assert "signed distance to HQ in mm" in canvas_note(viewer)  # the unit on the canvas, beside its colour bar
    # one vertebra against a spine's map: refused without a label, the chosen label's surface with it
    spine = 22 * (np.asarray(viewer.layers["HQ"].data) != 0).astype(np.int16)
    spine[:2, :2, :2] = 23
    viewer.add_labels(spine, name="spine truth", scale=(8.0, 8.0, 8.0), translate=viewer.layers["HQ"].translate)
    widget.ref_combo.set_layer(viewer.layers["spine truth"])
    widget.build()
    assert widget.worker is None and "reference 'spine truth' holds 2 labels (22, 23)" in widget.status.text()
    widget.label_spin.setValue(22)
    widget.build()
    qtbot.waitUntil(lambda: widget.worker is None and widget.button.isEnabled(), timeout=TIMEOUT)
    again = viewer.layers["surface: LQ"].data
    np.testing.assert_allclose(again[2], values)  # label 22 is HQ: the same distances


def test_uncertainty_layers(viewer, qtbot, tiny_ckpts):
    from napari_lsdebm.widgets.uncertainty import UncertaintyWidget

    widget = UncertaintyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.input_combo.set_layer(viewer.layers["LQ"])
    widget.path.edit.setText(str(tiny_ckpts["lsdebm"]))
    widget.reconnet_path.edit.setText(str(tiny_ckpts["reconnet"]))
    widget.n.setValue(3)
    viewer.layers["LQ"].visible = True
    widget.run()
    wait_worker(qtbot, widget)
    mean, var = viewer.layers["mean probability (LSD-EBM, N=3)"], viewer.layers["variance (LSD-EBM, N=3)"]
    # the mean surface (the default rendering) is drawn instead of the input, whose volume would hide it in 3D
    assert viewer.layers["mean surface (LSD-EBM, N=3)"].visible and not viewer.layers["LQ"].visible
    assert "Layer 'LQ' is hidden" in widget.status.text()
    assert mean.data.shape == var.data.shape == (16, 16, 16)
    assert 0.0 <= mean.data.min() and mean.data.max() <= 1.0 and var.data.min() >= 0.0
    assert widget.progress.value() == 3
    assert mean.metadata["provenance"]["settings"]["runs"] == 3
    assert var.colorbar.visible  # napari's colour bar on the canvas, and a labelled one in the dock
    assert not widget.colour_bar.isHidden() and "variance" in widget.colour_bar.label
    assert widget.colour_bar.limits == pytest.approx((0.0, max(float(var.data.max()), 1e-6)))
    # a label map: refused without a label, run on the chosen one with it
    first = np.array(mean.data)
    spine = 3 * (np.asarray(viewer.layers["LQ"].data) != 0).astype(np.int16)
    spine[0:2, 0:2, 0:2] = 9
    viewer.add_labels(spine, name="spine", scale=viewer.layers["LQ"].scale, metadata=dict(viewer.layers["LQ"].metadata))
    widget.input_combo.set_layer(viewer.layers["spine"])
    widget.run()
    assert widget.worker is None and "holds 2 labels (3, 9)" in widget.status.text()
    widget.label_spin.setValue(3)
    widget.run()
    wait_worker(qtbot, widget)
    again = viewer.layers["mean probability (LSD-EBM, N=3)"]
    np.testing.assert_allclose(again.data, first, atol=1e-6)  # label 3 is the LQ mask: the same runs
    # the same vertebra in a map three times its size: the runs and their maps on the box they can touch, in place
    big = np.zeros((48, 48, 48), np.int16)
    big[30:46, 2:18, 28:44] = spine
    viewer.add_labels(big, name="big", scale=(8.0, 8.0, 8.0), translate=(-240.0, -16.0, 0.0))
    widget.input_combo.set_layer(viewer.layers["big"])
    widget.run()
    wait_worker(qtbot, widget)
    moved = viewer.layers["mean probability (LSD-EBM, N=3)"]
    lo = np.round((np.asarray(moved.translate)[-3:] - (-240.0, -16.0, 0.0)) / 8.0).astype(int)
    assert np.prod(moved.data.shape) < big.size / 2 and np.all(lo >= 0)
    from lsdebm.methods import RunSettings
    from lsdebm.review.uncertainty import input_grid_uncertainty
    from napari_lsdebm._ui.pickers import affine_of
    from napari_lsdebm.widgets.uncertainty import load_for_uncertainty

    ckpt, stage1 = load_for_uncertainty("lsdebm", str(tiny_ckpts["lsdebm"]), True, str(tiny_ckpts["reconnet"]))
    direct = input_grid_uncertainty(ckpt.model, (big == 3).astype(np.uint8), affine_of(viewer.layers["big"]), 3,
                                    RunSettings(seed=0, use_mean=False), stage1.model)  # on the whole map
    box = tuple(slice(a, a + n) for a, n in zip(lo, moved.data.shape))
    np.testing.assert_allclose(moved.data, direct.mean[box], atol=1e-6)  # the same runs, where the vertebra is
    assert float(direct.mean[box].sum()) == pytest.approx(float(direct.mean.sum()), rel=1e-6)  # nothing outside


def test_export_widget_files_and_sidecars(viewer, qtbot, tmp_path):
    import imageio.v3 as iio
    import pyvista as pv

    from lsdebm.data.nifti import read_volume
    from lsdebm.review.surface import mask_mesh
    from napari_lsdebm.widgets.export import ExportWidget

    hq = viewer.layers["HQ"]
    mesh = mask_mesh(hq.data, 8.0, smooth_iterations=0)
    viewer.add_surface(mesh.layer_data(), name="mesh", metadata={"affine": hq.metadata["affine"], "frame": "grid-mm"})
    t, k = 3, 2
    frames = np.zeros((t, k, 8, 8, 8), np.float32)
    for i in range(t):
        for j in range(k):
            frames[i, j, 2:6, 2:6, 2 + i: 4 + i + j] = 1
    traj = viewer.add_image(frames, name="trajectory", axis_labels=("t", "k", "z", "y", "x"))
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.mask_combo.set_layer(hq)
    path, side = widget.save_mask(tmp_path / "hq.nii.gz")
    np.testing.assert_allclose(read_volume(path).affine, hq.metadata["affine"])
    widget.mesh_combo.set_layer(viewer.layers["mesh"])
    files, side = widget.save_mesh(tmp_path / "mesh.stl")
    assert [f.suffix for f in files] == [".stl", ".vtp"]
    assert pv.read(files[1]).n_cells == len(mesh.faces)
    assert json.loads(side.read_text())["export"]["frame"].startswith("world")
    path, side = widget.save_screenshot(tmp_path / "shot.png")
    assert iio.imread(path).ndim == 3 and "layers" in json.loads(side.read_text())
    widget.anim_combo.set_layer(traj)
    step = viewer.dims.current_step
    widget.order.setCurrentText("t and k")
    path, side = widget.save_animation(tmp_path / "traj.gif")
    assert len(iio.imread(path, index=None)) == t * k
    assert viewer.dims.current_step == step  # sliders restored
    widget.order.setCurrentText("t (diffusion step)")
    path, _ = widget.save_animation(tmp_path / "traj_t.gif")
    assert len(iio.imread(path, index=None)) == t


def test_animation_of_the_explorer_trajectory_layer(make_napari_viewer, qtbot, tmp_path, tiny_ckpts):
    """The export scrubs the explorer's lazy, non-blocking (t, k) layer: one decoded frame per step."""
    import imageio.v2 as iio2

    from lsdebm.explore.record import run_metadata
    from lsdebm.explore.volumes import TrajectoryVolumes, make_decoder
    from lsdebm.methods import RunSettings, run_events
    from lsdebm.runtime.checkpoint import load_checkpoint
    from lsdebm.tasks.reconstruct import make_recorder
    from napari_lsdebm._ui.trajectory_layer import FrameRefresher, trajectory_layer_data
    from napari_lsdebm.widgets.export import ExportWidget, capture_frames

    ckpt = load_checkpoint(tiny_ckpts["lsdebm"])
    recorder = make_recorder(ckpt.model, RunSettings(seed=2), every=2, metadata=run_metadata(ckpt, RunSettings(seed=2)))
    x = np.zeros((16,) * 3, np.float32)
    x[3:13, 4:12, 2:14] = 1
    recorder.consume(run_events(ckpt.model, x, RunSettings(seed=2)))
    traj = recorder.trajectory()
    viewer = make_napari_viewer()
    data, kwargs, _ = trajectory_layer_data(TrajectoryVolumes(traj, make_decoder(ckpt.model), (16,) * 3), 8.0, "traj")
    layer = viewer.add_image(data, **kwargs)
    refresher = FrameRefresher(layer)  # the explorer makes its layer non-blocking
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.anim_combo.set_layer(layer)
    widget.order.setCurrentText("t and k")
    path, side = widget.save_animation(tmp_path / "traj.mp4")
    with iio2.get_reader(path) as reader:
        assert reader.count_frames() == traj.n_frames * traj.n_k
    assert layer.data.nonblocking  # restored after the capture
    record = json.loads(side.read_text())
    assert record["checkpoints"][0]["sha256"] == ckpt.sha256 and record["seed"] == 2
    frames = capture_frames(viewer, layer, "t")
    assert len(frames) == traj.n_frames and len({f.tobytes() for f in frames}) == traj.n_frames
    refresher.detach()


def test_review_overlap_in_3d_before_the_mouse_moved(make_napari_viewer, tiny_pair):
    """In 3D napari has no view direction until the mouse moves over the canvas, and a new active Labels layer
    with features asks for its status then (napari 0.9: TypeError in Labels.get_status). The overlap view
    must still appear with its legend's voxel counts (Compare leaves the canvas in 3D before Review)."""
    from napari_lsdebm._ui.layers import volume_layer
    from napari_lsdebm._ui.pickers import grid_of
    from napari_lsdebm.widgets.review import ReviewWidget

    hq, _, _ = tiny_pair
    lq = hq.copy()
    lq[:, :, ::3] = 0
    viewer = make_napari_viewer(show=True)
    for data, name in ((hq, "HQ"), (lq, "LQ")):
        d, kwargs, kind = volume_layer(data, grid_affine(16, 8.0), name)
        getattr(viewer, f"add_{kind}")(d, **kwargs)
    viewer.dims.ndisplay = 3
    grid_of(viewer).enabled = True  # as Compare leaves it
    viewer.mouse_over_canvas = True  # the pointer rests on the canvas, never moved there in 3D
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.pred_combo.set_layer(viewer.layers["LQ"])
    widget.ref_combo.set_layer(viewer.layers["HQ"])
    overlap = widget.show_overlap()
    tp = int((overlap.data == TP).sum())
    assert tp == int(((lq > 0) & (hq > 0)).sum()) and f"{tp:,} voxels" in widget.legend.text()
    assert list(overlap.features["class"]) == ["TN", "TP", "FP", "FN"]
    widget.show_overlap()  # again: the layer is updated in place
    assert [layer.name for layer in viewer.layers].count(overlap.name) == 1


def test_review_and_surface_compare_files_where_they_lie(make_napari_viewer, qtbot, tmp_path):
    """Two files of one shape were compared voxel by voxel: a mask moved by 20 mm scored DSC 1, the same mask
    stored with flipped axes 0.32. Now the reference is brought onto the prediction's grid through both
    affines (the plugin's reader keeps them)."""
    from lsdebm.data.nifti import write_volume
    from lsdebm.data.real import load_real_masks
    from napari_lsdebm.widgets.review import ReviewWidget

    m = load_real_masks(split="val", levels=("L3",))[0]
    mask, affine = (m.mask > 0).astype(np.uint8), np.asarray(m.affine, float)
    moved = affine.copy()
    moved[:3, 3] += affine[:3, :3] @ np.array([0.0, 0.0, 20.0 / np.linalg.norm(affine[:3, 2])])
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = np.array(mask.shape[:2]) - 1  # index i -> n - 1 - i along axes 0 and 1
    files = {"truth": write_volume(tmp_path / "truth.nii.gz", mask, affine),
             "moved": write_volume(tmp_path / "moved.nii.gz", mask, moved),
             "flipped": write_volume(tmp_path / "flipped.nii.gz", mask[::-1, ::-1].copy(), affine @ flip)}
    viewer = make_napari_viewer()
    layers = {k: viewer.open(str(path), plugin="napari-lsdebm")[0] for k, path in files.items()}
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.ref_combo.set_layer(layers["truth"])
    for name, expected in (("flipped", 1.0), ("moved", None)):
        widget.pred_combo.set_layer(layers[name])
        widget.rows = []
        widget.update_metrics()
        qtbot.waitUntil(lambda: bool(widget.rows) and widget.worker is None, timeout=TIMEOUT)
        dsc = widget.rows[0].metrics["dsc"]
        assert dsc == pytest.approx(1.0) if expected else dsc < 0.7, (name, dsc)
