"""The less-used docks as napari hands them the viewer (through its plugin proxy), with bad inputs, reruns and
closing mid-work (run under xvfb-run -a). Found by GUI QA of the Uncertainty, Surface, Teaching and Export docks."""
import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

TIMEOUT = 240_000


def add_hq(viewer, tiny_pair):
    """The tiny phantom's HQ mask as the NIfTI reader adds it (16^3 at 8 mm)."""
    from lsdebm.data.phantoms import grid_affine
    from napari_lsdebm._ui.layers import volume_layer

    data, kwargs, kind = volume_layer(tiny_pair[0], grid_affine(16, 8.0), "HQ")
    return getattr(viewer, f"add_{kind}")(data, **kwargs)


def test_put_layer_replaces_its_layer_through_napari_proxy(make_napari_viewer):
    """A docked widget gets napari's PublicOnlyProxy of the viewer, whose layers are proxies too: a rerun of
    Uncertainty, Surface distance or Review's overlap added "name [1]", "name [2]"... instead of updating."""
    from napari.utils._proxies import PublicOnlyProxy

    from napari_lsdebm._ui.pickers import REVIEW_KEY, put_layer

    viewer = make_napari_viewer()
    proxy = PublicOnlyProxy(viewer)
    for value in (0.0, 1.0, 0.5):
        put_layer(proxy, "image", np.full((4, 4, 4), value, np.float32), "mean probability (VAE, N=2)",
                  metadata={REVIEW_KEY: True})
    assert [layer.name for layer in viewer.layers] == ["mean probability (VAE, N=2)"]
    assert float(viewer.layers[0].data.max()) == 0.5


@pytest.mark.parametrize("dock", ["uncertainty", "surface"])
def test_a_2d_or_4d_layer_is_refused_in_one_line(make_napari_viewer, qtbot, dock):
    """A 2D layer raised ValueError('negative dimensions are not allowed') out of Run / Build surface; a 4D one
    failed in Uncertainty's worker with a numpy broadcasting error."""
    from napari_lsdebm.widgets.surface import SurfaceWidget
    from napari_lsdebm.widgets.uncertainty import UncertaintyWidget

    viewer = make_napari_viewer()
    widget = {"uncertainty": UncertaintyWidget, "surface": SurfaceWidget}[dock](viewer)
    viewer.window.add_dock_widget(widget)
    combo, act = ((widget.input_combo, widget.run) if dock == "uncertainty" else (widget.mask_combo, widget.build))
    flat = viewer.add_labels(np.ones((12, 12), np.uint8), name="flat")
    combo.set_layer(flat)
    act()
    assert widget.worker is None and widget.status.text() == "layer 'flat' is 2D (shape (12, 12)); expected a 3D volume"
    stack = np.zeros((2, 12, 12, 12), np.uint8)
    stack[:, 3:9, 3:9, 3:9] = 1
    combo.set_layer(viewer.add_labels(stack, name="stack"))
    act()  # Surface refuses it on its worker
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT)
    assert "3D" in widget.status.text() and "(2, 12, 12, 12)" in widget.status.text()


def test_export_refuses_a_2d_mask_in_words(make_napari_viewer, tmp_path):
    from napari_lsdebm.widgets.export import ExportWidget

    viewer = make_napari_viewer()
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.mask_combo.set_layer(viewer.add_labels(np.ones((12, 12), np.uint8), name="flat"))
    widget._run(widget.save_mask, str(tmp_path / "flat.nii.gz"))
    assert widget.status.text() == "Not saved: layer 'flat' is 2D (shape (12, 12)); expected a 3D volume"
    assert not list(tmp_path.iterdir())


def long_uncertainty_run(viewer, tiny_ckpts, tiny_pair, render: str = "mesh"):
    """An Uncertainty dock on the tiny HQ mask, started on 400 runs of the tiny LSD-EBM (long enough to stop)."""
    from napari_lsdebm.widgets.uncertainty import UncertaintyWidget

    add_hq(viewer, tiny_pair)
    widget = UncertaintyWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.path.edit.setText(str(tiny_ckpts["lsdebm"]))
    widget.reconnet_path.edit.setText(str(tiny_ckpts["reconnet"]))
    widget.render.setCurrentText(render)
    widget.n.setValue(400)
    widget.run()
    return widget


def test_uncertainty_closed_mid_run_adds_no_layers(make_napari_viewer, qtbot, tiny_ckpts, tiny_pair):
    """Closing the dock cancels the runs (after the current batch) and lays out nothing, as Compare does."""
    viewer = make_napari_viewer()
    widget = long_uncertainty_run(viewer, tiny_ckpts, tiny_pair)
    assert widget.worker is not None
    viewer.window.remove_dock_widget(widget)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT)
    assert [layer.name for layer in viewer.layers] == ["HQ"] and "closed" in widget.status.text()


def test_uncertainty_cancelled_says_how_many_runs_it_shows(make_napari_viewer, qtbot, tiny_ckpts, tiny_pair):
    """A cancelled run shows the runs done so far; its status read like a finished one ("4 runs: ...")."""
    viewer = make_napari_viewer()
    widget = long_uncertainty_run(viewer, tiny_ckpts, tiny_pair, render="volume")
    qtbot.waitUntil(lambda: widget.progress.value() > 0, timeout=TIMEOUT)
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT)
    done = [layer for layer in viewer.layers if layer.name.startswith("mean probability")]
    assert len(done) == 1 and "N=400" not in done[0].name
    runs = int(done[0].name.split("N=")[1].rstrip(")"))
    assert widget.status.text().startswith(f"Cancelled after {runs} of 400 runs: max variance")


def test_uncertainty_volume_rerun_shows_the_volumes_not_the_old_surface(make_napari_viewer, qtbot, tiny_ckpts,
                                                                       tiny_pair):
    from napari.utils._proxies import PublicOnlyProxy

    from napari_lsdebm.widgets.uncertainty import UncertaintyWidget

    viewer = make_napari_viewer()
    add_hq(viewer, tiny_pair)
    widget = UncertaintyWidget(PublicOnlyProxy(viewer))  # as napari docks it
    viewer.window.add_dock_widget(widget)
    widget.path.edit.setText(str(tiny_ckpts["lsdebm"]))
    widget.reconnet_path.edit.setText(str(tiny_ckpts["reconnet"]))
    widget.n.setValue(2)
    for render in ("mesh", "mesh", "volume"):
        widget.render.setCurrentText(render)
        widget.run()
        qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT)
        assert "2 runs" in widget.status.text(), widget.status.text()
    shown = {layer.name: layer.visible for layer in viewer.layers}
    assert shown == {"HQ": False, "mean probability (LSD-EBM, N=2)": True, "variance (LSD-EBM, N=2)": True}


def generate(widget, qtbot, methods):
    for method, box in widget.use.items():
        box.setChecked(method in methods)
    widget.generate()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=300_000)


def teaching_dock(viewer):
    """A docked Teaching widget generating one digit per method, every 30th iteration recorded (quick)."""
    from napari_lsdebm.widgets.teach import TeachingWidget

    widget = TeachingWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.n.setValue(1)
    widget.every.setValue(30)
    return widget


def test_teaching_rerun_with_fewer_methods_drops_the_others(make_napari_viewer, qtbot):
    """Unticked methods kept their digits of the previous run on the canvas, uncaptioned, beside the new ones."""
    viewer = make_napari_viewer()
    widget = teaching_dock(viewer)
    generate(widget, qtbot, ("lebm", "lsdebm"))
    generate(widget, qtbot, ("lebm",))
    assert [layer.name for layer in viewer.layers if "teach_method" in layer.metadata] == ["teach: LEBM (latent prior)"]
    assert "LSD-EBM (latent diffusion) was not in the last generation" in widget.plots.message.text()


def test_closing_the_teaching_dock_closes_its_plots_and_stops_following_the_sliders(make_napari_viewer, qtbot):
    from napari_lsdebm._ui.legends import canvas_note, show_canvas_note

    viewer = make_napari_viewer()
    widget = teaching_dock(viewer)
    generate(widget, qtbot, ("lebm",))
    assert "Teaching plots" in viewer.window.dock_widgets
    viewer.window.remove_dock_widget(widget)
    assert "Teaching plots" not in viewer.window.dock_widgets and widget.plots_dock is None
    show_canvas_note(viewer, "another dock's note")
    viewer.dims.set_current_step(0, 3)
    assert canvas_note(viewer) == "another dock's note"


def test_closing_the_landscape_dock_stops_writing_the_canvas_note(make_napari_viewer, qtbot):
    from napari_lsdebm._ui.legends import canvas_note, show_canvas_note
    from napari_lsdebm.widgets.landscape import LandscapeWidget

    viewer = make_napari_viewer()
    widget = LandscapeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.n.setValue(2)
    widget.start()
    qtbot.waitUntil(lambda: widget.run is not None, timeout=120_000)
    viewer.window.remove_dock_widget(widget)
    show_canvas_note(viewer, "another dock's note")
    viewer.dims.set_current_step(0, 3)
    assert canvas_note(viewer) == "another dock's note"


def test_animation_name_is_checked_before_capturing(make_napari_viewer, tmp_path):
    """A name the writer refuses (suffix, under a file) was only refused after every frame had been captured."""
    from napari_lsdebm.widgets.export import ExportWidget

    viewer = make_napari_viewer()
    traj = viewer.add_image(np.zeros((3, 2, 6, 6, 6), np.float32), name="trajectory", axis_labels=tuple("tkzyx"))
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.anim_combo.set_layer(traj)
    (tmp_path / "afile").write_text("x")
    for name, message in (("a.avi", "animations must end with .gif or .mp4"), ("afile/a.gif", "is a file, not a dir")):
        assert widget.start_animation(tmp_path / name, overwrite=True) is None
        assert message in widget.status.text() and widget.anim_button.isEnabled()
    (tmp_path / "taken.gif").write_text("x")
    assert widget.start_animation(tmp_path / "taken.gif") is None and "already exists" in widget.status.text()


def test_jpeg_screenshot_of_an_rgba_canvas(tmp_path):
    """.jpg is offered, but an RGBA screenshot failed with 'cannot write mode RGBA as JPEG'."""
    import imageio.v3 as iio

    from lsdebm.review.export import export_image

    path, _ = export_image(tmp_path / "shot.jpg", np.full((8, 10, 4), 200, np.uint8))
    assert iio.imread(path).shape == (8, 10, 3)
