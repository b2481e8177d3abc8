"""Docks over their lifetime (run under xvfb-run): renamed layers stay chosen, closing the viewer or a dock stops
its run and shows no result, a re-added explorer owns the trajectory's mesh, and saving to an unwritable place
says so in the status line."""
import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from test_explorer_gui import RUN_TIMEOUT_MS, docked, run_sample  # noqa: E402

CANCEL_MS = 20_000  # a cancelled run stops at its next event


def add_masks(viewer, *names):
    return [viewer.add_labels(np.zeros((4, 4, 4), np.uint8), name=name) for name in names]


def test_renamed_layers_stay_chosen_in_layer_pickers_and_the_explorer(make_napari_viewer):
    from napari.layers import Labels

    from napari_lsdebm._ui.pickers import LayerCombo

    viewer, w = docked(make_napari_viewer())
    first, second, parts = add_masks(viewer, "first", "second", "parts")
    combo, optional = LayerCombo(viewer, (Labels,)), LayerCombo(viewer, (Labels,), optional=True)
    combo.setCurrentText("second")
    optional.setCurrentText("parts")
    w.input_combo.setCurrentText("second")
    second.name, parts.name = "my input", "my parts"
    add_masks(viewer, "unrelated")  # any later change of the layer list refreshes the pickers
    assert (combo.currentText(), optional.currentText(), w.input_combo.currentText()) == \
        ("my input", "my parts", "my input")
    assert combo.layer() is second and optional.layer() is parts and w.input_combo.layer() is second
    first.name = "my truth"  # renaming another layer moves nothing
    assert combo.layer() is second and w.input_combo.layer() is second


def long_run(qtbot, w, ckpt, monkeypatch):
    """Start a run that lasts minutes (one event per Langevin iteration) and wait for its first events."""
    from lsdebm.sampling.kernels import switch as fast

    monkeypatch.setitem(fast.STATE, "enabled", False)
    w.open_sample()
    assert w.checkpoint_panel.load(ckpt) is not None, w.checkpoint_panel.error.text()
    w.run_panel.K.setValue(100_000)
    w.run()
    qtbot.waitUntil(lambda: w.run_panel.progress.value() > 2, timeout=RUN_TIMEOUT_MS)
    job = w.worker
    ended = []
    job.ended.connect(lambda outcome: ended.append(outcome.status))
    return job, ended


def test_closing_the_viewer_cancels_the_explorer_run(make_napari_viewer, qtbot, tiny_ckpts, monkeypatch):
    viewer, w = docked(make_napari_viewer(show=True))
    job, ended = long_run(qtbot, w, tiny_ckpts["lsdebm"], monkeypatch)
    try:
        viewer.close()
        qtbot.waitUntil(lambda: ended == ["cancelled"], timeout=CANCEL_MS)
        assert job.cancelled() and w.worker is None and len(viewer.layers) == 0  # no result in the closed viewer
    finally:
        job.cancel()


def test_a_job_whose_qt_object_was_deleted_reports_and_ends_quietly(qtbot):
    """At process exit Python deletes a running Job's QObject; its worker's progress and end must not raise."""
    from qtpy import sip

    from napari_lsdebm._ui.jobs import Job, run_job

    job = Job(lambda outcome: None, lambda item: None)
    sip.delete(job)
    job.report("item")  # would raise "wrapped C/C++ object of type Job has been deleted"
    assert job.cancelled()  # nobody listens: the work stops at its next item
    assert run_job(job, lambda j: 42).status == "done"


def test_closing_compare_mid_run_cancels_it_and_lays_out_nothing(make_napari_viewer, qtbot, tiny_ckpts, tiny_pair):
    from napari_lsdebm._ui.pickers import grid_of
    from napari_lsdebm.widgets.compare import COMPARE_KEY, CompareWidget

    viewer = make_napari_viewer()
    hq, lq, _ = tiny_pair
    viewer.add_labels(hq, name="HQ", scale=(8, 8, 8))
    viewer.add_labels(lq, name="LQ", scale=(8, 8, 8))
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget)
    for kind, row in widget.paths.items():
        row.edit.setText(str(tiny_ckpts[kind]))
    widget.input_combo.set_layer(viewer.layers["LQ"])
    widget.reference_combo.set_layer(viewer.layers["HQ"])
    widget.K.setValue(3000)  # LSD-EBM runs long enough to close the dock while it samples
    widget.run_button.click()
    job = widget.worker
    ended = []
    job.ended.connect(lambda outcome: ended.append(outcome.status))
    qtbot.waitUntil(lambda: "Running" in widget.status.text(), timeout=RUN_TIMEOUT_MS)
    layers_before = [(lay.name, lay.visible) for lay in viewer.layers]
    try:
        viewer.window.remove_dock_widget(widget)
        assert job.cancelled()
        qtbot.waitUntil(lambda: widget.worker is None, timeout=RUN_TIMEOUT_MS)
        assert not any(COMPARE_KEY in lay.metadata for lay in viewer.layers)
        assert [(lay.name, lay.visible) for lay in viewer.layers] == layers_before and not grid_of(viewer).enabled
    finally:
        job.cancel()
        qtbot.waitUntil(lambda: widget.worker is None, timeout=RUN_TIMEOUT_MS)


def test_a_re_added_explorer_owns_the_one_mesh_of_the_trajectory(make_napari_viewer, qtbot, tiny_ckpts):
    from napari.layers import Surface

    from napari_lsdebm._ui.trajectory_surface import SURFACE_OF_KEY

    viewer, w = docked(make_napari_viewer(show=True))
    layer = run_sample(qtbot, w, tiny_ckpts["lsdebm"], K=2, depth=1)

    def meshes():
        return [lay for lay in viewer.layers if isinstance(lay, Surface) and SURFACE_OF_KEY in lay.metadata]

    assert len(meshes()) == 1 and meshes()[0].visible and not layer.visible
    viewer.window.remove_dock_widget(w)
    qtbot.wait(50)
    assert meshes() == [] and layer.visible  # the closed explorer's mesh goes; the trajectory is drawn as a volume
    _, w2 = docked(viewer)
    qtbot.wait(50)
    assert w2.layer is layer and len(meshes()) == 1 and meshes()[0].visible and not layer.visible
    w2.render_combo.setCurrentText("volume")
    assert layer.visible and not any(mesh.visible for mesh in meshes())
    w2.render_combo.setCurrentText("mesh")
    assert len(meshes()) == 1 and meshes()[0].visible and not layer.visible


def test_closing_the_explorer_mid_run_leaves_the_previous_result_on_screen(make_napari_viewer, qtbot, tiny_ckpts):
    """A QA pass closed the dock during a second run: the first run's mesh went with the dock, and the cancelled
    run's restore then hid the trajectory layer that had taken its place. Nothing of that result was on screen."""
    viewer, w = docked(make_napari_viewer(show=True))
    first = run_sample(qtbot, w, tiny_ckpts["lsdebm"], K=2, depth=1)
    w.run_panel.K.setValue(100_000)
    w.run()
    qtbot.waitUntil(lambda: w.run_panel.progress.value() > 5, timeout=60_000)
    assert not first.visible and not viewer.layers[f"{first.name} (mesh)"].visible  # hidden under the preview
    viewer.window.remove_dock_widget(w)
    qtbot.waitUntil(lambda: w.worker is None, timeout=30_000)
    qtbot.wait(100)
    assert first in viewer.layers and first.visible  # drawn as a volume now that its mesh went with the dock
    assert not any("preview" in lay.name for lay in viewer.layers)


def test_save_trajectory_to_an_unwritable_place_says_not_saved(explorer_with_run, tmp_path):
    w = explorer_with_run
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert w.save_trajectory(str(afile / "run.npz")) is None
    assert w.status.text().startswith("Not saved:") and "afile" in w.status.text()
    assert w.save_trajectory(str(tmp_path / "run.npz")).endswith("run.npz") and "saved" in w.status.text()


@pytest.fixture
def explorer_with_run(make_napari_viewer, qtbot, tiny_ckpts):
    _, w = docked(make_napari_viewer())
    run_sample(qtbot, w, tiny_ckpts["lsdebm"], K=2, depth=1)
    return w
