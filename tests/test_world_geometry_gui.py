"""Layers as napari hands them to plugin docks, and layers placed by napari's own ``affine`` (run under xvfb-run -a).

Found by QA: a dock opened from the Plugins menu gets the viewer behind napari's ``PublicOnlyProxy``, whose
``add_shapes`` returns a proxy, so Review's *New ROI box* added the layer but never chose it; a mask shown
with ``viewer.add_labels(data, affine=nifti_affine)`` (scale 1, the spacing in napari's affine) was saved
with an identity affine, run in the explorer as 1 mm isotropic at the origin and scored at 1 mm spacing.
"""
import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

TIMEOUT = 240_000  # ms; the 2-core CI machine may be busy


def test_new_roi_box_is_chosen_behind_napari_plugin_proxy(make_napari_viewer, tiny_pair):
    from napari.utils._proxies import PublicOnlyProxy

    from napari_lsdebm.widgets.review import ReviewWidget

    hq, lq, _ = tiny_pair
    viewer = make_napari_viewer()
    viewer.add_labels(hq.astype(np.int32), name="HQ", scale=(8.0,) * 3)
    viewer.add_labels(lq.astype(np.int32), name="LQ", scale=(8.0,) * 3)
    widget = ReviewWidget(PublicOnlyProxy(viewer))  # what Plugins -> Review metrics and overlap hands the dock
    viewer.window.add_dock_widget(widget)
    widget.new_roi()
    assert widget.roi_combo.layer() is viewer.layers["ROI"]


def _thick_layer(viewer, tiny_pair):
    """LQ of the tiny phantom with every second slice along axis 2 kept: spacing (8, 8, 16) mm, shown by napari's
    ``affine`` (scale 1), away from the origin."""
    _, lq, _ = tiny_pair
    affine = np.diag([8.0, 8.0, 16.0, 1.0])
    affine[:3, 3] = (-40.0, 300.0, -90.0)
    return viewer.add_labels(lq[:, :, ::2].astype(np.int32), name="thick", affine=affine), affine


def test_writer_and_docks_read_napari_affine(make_napari_viewer, tiny_pair, tmp_path):
    import nibabel as nib
    from napari.plugins.io import save_layers

    from napari_lsdebm._ui.pickers import affine_of, spacing_of

    viewer = make_napari_viewer()
    layer, affine = _thick_layer(viewer, tiny_pair)
    assert np.allclose(affine_of(layer), affine)
    assert spacing_of(layer) == pytest.approx((8.0, 8.0, 16.0))
    written = save_layers(str(tmp_path / "thick.nii.gz"), [layer], plugin="napari-lsdebm")
    assert np.allclose(nib.load(written[0]).affine, affine)


def test_explorer_result_lies_on_an_input_placed_by_napari_affine(make_napari_viewer, qtbot, tiny_pair, tiny_ckpts):
    from napari_lsdebm.widgets.explorer import ExplorerWidget

    viewer = make_napari_viewer()
    layer, _ = _thick_layer(viewer, tiny_pair)
    widget = ExplorerWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.checkpoint_panel.load(tiny_ckpts["lsdebm"]) is not None
    widget.run_panel.K.setValue(2)
    widget.input_combo.set_layer(layer)
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT)
    results = [lay for lay in viewer.layers if lay.name.endswith("(output grid)")]
    assert results, [lay.name for lay in viewer.layers]  # anisotropic (8, 8, 16) mm: the isotropic output grid
    out = results[0]
    lo, hi = (np.asarray(layer.data_to_world(np.array(c, float))) for c in ((0, 0, 0), np.array(layer.data.shape) - 1))
    olo = np.asarray(out.data_to_world(np.zeros(3)))
    ohi = np.asarray(out.data_to_world(np.array(out.data.shape, float) - 1))
    assert np.all(olo >= lo - 16) and np.all(ohi <= hi + 16), (lo, hi, olo, ohi)  # same field of view, in world mm
