"""Layer roles (input / truth / result) and the defaults they give Compare, Review and Uncertainty,
and ``lsdebm view FILE TRAJ`` opening at the final frame in 3D (run under xvfb-run -a)."""
import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from lsdebm.data.phantoms import grid_affine  # noqa: E402

TIMEOUT = 240_000


def add(viewer, data, name, role=None):
    from napari_lsdebm._ui.layers import volume_layer
    from napari_lsdebm._ui.roles import tag_tuple

    d, kwargs, kind = tag_tuple(volume_layer(data, grid_affine(16, 8.0), name), role)
    return getattr(viewer, f"add_{kind}")(d, **kwargs)


@pytest.fixture
def tagged(make_napari_viewer, tiny_pair):
    """Truth first (the layer every picker used to start with), then the input and two results."""
    hq, lq, _ = tiny_pair
    viewer = make_napari_viewer()
    layers = {"truth": add(viewer, hq, "mask A", "truth"), "input": add(viewer, lq, "mask B", "input"),
              "old": add(viewer, lq, "result 1", "result"), "new": add(viewer, hq, "result 2", "result")}
    return viewer, layers


def test_samples_and_reader_tag_roles(make_napari_viewer, tmp_path):
    from lsdebm.data.nifti import write_volume
    from lsdebm.data.phantoms import make_vertebra
    from napari_lsdebm._ui.roles import role_of

    viewer = make_napari_viewer()
    viewer.open_sample("napari-lsdebm", "phantom_pair")
    assert {lay.name: role_of(lay) for lay in viewer.layers} == {
        "HQ (L3)": "truth", "LQ thick-slice (L3)": "input", "parts (L3)": None}
    ph = make_vertebra("L1", 0, 16, 4.0)
    expect = {"case_gt": "truth", "verse_truth_mask": "truth", "case_lq": "input", "thick5mm": "input",
              "plain": None}
    for stem in expect:
        write_volume(tmp_path / f"{stem}.nii.gz", ph.mask, ph.affine)
        viewer.open(str(tmp_path / f"{stem}.nii.gz"), plugin="napari-lsdebm")
    assert {stem: role_of(viewer.layers[stem]) for stem in expect} == expect
    import nibabel as nib

    img = nib.load(tmp_path / "plain.nii.gz")
    img.header["descrip"] = b"lsdebm role: truth"
    nib.save(img, tmp_path / "named_input.nii.gz")  # explicit metadata beats the file name
    layer = viewer.open(str(tmp_path / "named_input.nii.gz"), plugin="napari-lsdebm")[0]
    assert role_of(layer) == "truth"


def test_docks_preselect_from_roles(tagged):
    from napari_lsdebm.widgets.compare import CompareWidget
    from napari_lsdebm.widgets.review import ReviewWidget
    from napari_lsdebm.widgets.uncertainty import UncertaintyWidget

    viewer, layers = tagged
    compare, review, uncertainty = CompareWidget(viewer), ReviewWidget(viewer), UncertaintyWidget(viewer)
    assert compare.input_combo.layer() is layers["input"]
    assert compare.reference_combo.layer() is layers["truth"]
    assert uncertainty.input_combo.layer() is layers["input"]
    from napari_lsdebm.widgets.export import ExportWidget

    export = ExportWidget(viewer)
    assert review.pred_combo.layer() is layers["new"] and review.ref_combo.layer() is layers["truth"]
    assert export.mask_combo.layer() is layers["new"]  # it started on the first layer listed
    newest = add(viewer, np.asarray(layers["input"].data), "result 3", "result")
    assert review.pred_combo.layer() is newest and export.mask_combo.layer() is newest  # follow the newest result
    export.mask_combo.set_layer(layers["truth"])
    export.mask_combo.activated.emit(export.mask_combo.currentIndex())  # as a user's pick in the combo box
    add(viewer, np.asarray(layers["input"].data), "result 4", "result")
    assert export.mask_combo.layer() is layers["truth"]  # the user's choice stays


def test_docks_opened_before_the_sample_pick_it_up(make_napari_viewer):
    from napari_lsdebm.widgets.compare import CompareWidget
    from napari_lsdebm.widgets.review import ReviewWidget

    viewer = make_napari_viewer()
    compare, review = CompareWidget(viewer), ReviewWidget(viewer)
    viewer.open_sample("napari-lsdebm", "phantom_pair")
    assert compare.input_combo.layer().name == "LQ thick-slice (L3)"
    assert compare.reference_combo.layer().name == "HQ (L3)"
    assert review.pred_combo.layer().name == "LQ thick-slice (L3)" and review.ref_combo.layer().name == "HQ (L3)"


def test_self_comparison_is_refused(tagged, qtbot):
    from napari_lsdebm.widgets.compare import CompareWidget
    from napari_lsdebm.widgets.review import ReviewWidget

    viewer, layers = tagged
    compare = CompareWidget(viewer)
    compare.input_combo.set_layer(layers["truth"])
    compare.run()
    assert compare.worker is None and "itself" in compare.status.text()
    review = ReviewWidget(viewer)
    qtbot.waitUntil(lambda: review.worker is None and bool(review.rows), timeout=TIMEOUT)
    review.pred_combo.set_layer(layers["truth"])
    review.update_metrics()
    assert review.worker is None and review.rows == [] and "itself" in review.status.text()
    assert review.show_overlap() is None and "itself" in review.status.text()


def test_deleting_the_reference_does_not_make_the_prediction_its_own_reference(tagged, qtbot):
    from napari_lsdebm.widgets.compare import CompareWidget
    from napari_lsdebm.widgets.review import ReviewWidget

    def choose(combo, layer):  # as a user does: the picker's choice is theirs from then on
        combo.set_layer(layer)
        combo.activated.emit(combo.currentIndex())

    viewer, layers = tagged
    review, compare = ReviewWidget(viewer), CompareWidget(viewer)
    choose(review.pred_combo, layers["truth"])
    choose(review.ref_combo, layers["input"])
    choose(compare.input_combo, layers["input"])
    choose(compare.reference_combo, layers["old"])
    viewer.layers.remove(layers["input"])
    assert review.pred_combo.layer() is layers["truth"]
    assert review.ref_combo.layer() is not None and review.ref_combo.layer() is not layers["truth"]
    assert compare.input_combo.layer() is not None and compare.input_combo.layer() is not layers["old"]
    qtbot.waitUntil(lambda: review.worker is None and bool(review.rows), timeout=TIMEOUT)
    assert "itself" not in review.status.text()


def test_the_self_comparison_refusal_follows_a_rename(tagged, qtbot):
    from napari_lsdebm.widgets.review import ReviewWidget

    viewer, layers = tagged
    review = ReviewWidget(viewer)
    review.pred_combo.set_layer(layers["truth"])
    review.ref_combo.set_layer(layers["truth"])
    review.update_metrics()
    assert "'mask A' is chosen twice" in review.status.text()
    layers["truth"].name = "vertebra"
    assert "'vertebra' is chosen twice" in review.status.text() and "mask A" not in review.status.text()


def test_view_file_traj_opens_in_3d_at_the_final_frame(qapp, mock_app_model, tiny_ckpts, tmp_path):
    """(mock_app_model: a fresh napari app for the viewer open_viewer makes, whatever tests ran before.)"""
    from lsdebm.data.nifti import write_volume
    from lsdebm.data.phantoms import make_vertebra
    from lsdebm.explore.record import run_metadata
    from lsdebm.methods import RunSettings, run_events
    from lsdebm.runtime.checkpoint import load_checkpoint
    from lsdebm.tasks.reconstruct import make_recorder
    from napari_lsdebm._ui.trajectory_layer import slider_axes
    from napari_lsdebm.launch import open_viewer

    ckpt = load_checkpoint(tiny_ckpts["lsdebm"])
    recorder = make_recorder(ckpt.model, RunSettings(seed=1), every=2, metadata=run_metadata(ckpt, RunSettings(seed=1)))
    x = np.zeros((16,) * 3, np.float32)
    x[3:13, 4:12, 2:14] = 1
    recorder.consume(run_events(ckpt.model, x, RunSettings(seed=1)))
    traj = recorder.trajectory()
    traj_path = tmp_path / "run.npz"
    traj.save(traj_path)
    ph = make_vertebra("L1", 0, 16, 8.0)
    nifti = write_volume(tmp_path / "case_lq.nii.gz", ph.mask, ph.affine)
    viewer, explorer = open_viewer([str(nifti), str(traj_path)], show=False)
    try:
        layer = next(lay for lay in viewer.layers if lay.ndim == 5)
        t_axis, k_axis = slider_axes(viewer, layer)
        assert viewer.dims.ndisplay == 3 and explorer.view3d_box.isChecked()
        assert viewer.dims.current_step[t_axis] == traj.n_frames - 1
        assert viewer.dims.current_step[k_axis] == traj.n_k - 1
        assert explorer.checkpoint_panel.checkpoints["lsdebm"].sha256 == ckpt.sha256
        viewer.dims.ndisplay = 2  # napari's own 2D/3D button: the box follows the canvas
        assert not explorer.view3d_box.isChecked()
    finally:
        viewer.close()
