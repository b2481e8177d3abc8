"""Mesh rendering of decoded volumes in 3D (run under xvfb-run): the explorer's recorded and reopened
trajectories, the live preview, the volume option, and the compare / uncertainty docks' mesh option."""
import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from test_explorer_gui import RUN_TIMEOUT_MS, docked, run_sample, show_frame  # noqa: E402


@pytest.fixture
def explorer(make_napari_viewer):
    return docked(make_napari_viewer())


def count_meshing(monkeypatch):
    """Record the frame keys meshed from now on (every call of frame_mesh by TrajectoryVolumes)."""
    from lsdebm.explore import volumes as volumes_module

    made = []
    real = volumes_module.frame_mesh

    def counted(*args, **kwargs):
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(volumes_module, "frame_mesh", counted)
    return made


def follows_t_and_k(qtbot, viewer, widget, layer, monkeypatch):
    """The Surface layer shows a new mesh when t or k moves, and cached meshes on revisits."""
    from napari.layers import Surface

    surface = viewer.layers[f"{layer.name} (mesh)"]
    assert isinstance(surface, Surface) and surface.visible and not layer.visible and viewer.dims.ndisplay == 3
    n_s, n_k = layer.data.shape[:2]
    final, inner, first = (n_s - 1, n_k - 1), (n_s - 2, 0), (0, n_k - 1)
    seen = {}
    for pos in (final, inner, first):
        show_frame(qtbot, viewer, layer, *pos)
        seen[pos] = surface.data[0].copy()
        assert len(surface.data[1]) > 1  # a real surface, not the empty placeholder
    assert not np.array_equal(seen[final], seen[inner])  # k (and t) moved: other vertices
    assert not np.array_equal(seen[final], seen[first])  # t moved: other vertices
    assert layer.data.jobs.wait_idle(60)
    made, decoded = count_meshing(monkeypatch), layer.data.decoded
    follower = widget.surfaces[id(layer)]
    for pos in (final, inner, first):  # revisits: cached meshes, nothing decoded or meshed again
        shown = follower.meshes_shown
        show_frame(qtbot, viewer, layer, *pos)
        np.testing.assert_array_equal(surface.data[0], seen[pos])
        assert follower.meshes_shown > shown and follower.shown is layer.data._mesh_of(layer.data.key(*pos))
    assert layer.data.jobs.wait_idle(60)
    assert made == [] and layer.data.decoded == decoded
    return surface


def test_recorded_run_draws_a_surface_that_follows_t_and_k(explorer, qtbot, fitted_tiny_lsdebm, monkeypatch):
    viewer, w = explorer
    assert w.render_combo.currentText() == "mesh"  # the default
    layer = run_sample(qtbot, w, fitted_tiny_lsdebm, K=3, depth=2)
    surface = follows_t_and_k(qtbot, viewer, w, layer, monkeypatch)
    np.testing.assert_allclose(surface.scale, (1, 1, 1))  # vertices are in mm along the array axes
    np.testing.assert_allclose(surface.translate, np.asarray(layer.translate)[-3:])
    np.testing.assert_allclose(layer.data.mesh_spacing, np.asarray(layer.scale)[-3:])
    # a new mesh only uploads triangles: vispy keeps its colour-transform shader (no recompile per step)
    build = viewer.window._qt_viewer.canvas.layer_to_visual[surface].node._build_color_transform
    values = np.ones((3, 1), np.float32)  # per-vertex values, as napari hands them to vispy
    assert build(values) is build(values)
    # the surface lies where the Image layer's iso-surface does: inside the decoded mask's bounds (mm)
    pos = (layer.data.shape[0] - 1, layer.data.shape[1] - 1)
    show_frame(qtbot, viewer, layer, *pos)
    inside = np.argwhere(layer.data.frame(*pos) >= 0.5) * layer.data.mesh_spacing
    assert np.all(surface.data[0] >= inside.min(0) - 8.0) and np.all(surface.data[0] <= inside.max(0) + 8.0)


def test_a_run_result_is_shown_without_decoding_or_meshing_on_the_gui_thread(explorer, qtbot, fitted_tiny_lsdebm,
                                                                           monkeypatch):
    """The final frame is decoded and meshed on the run's worker thread, so adding the result layers decodes
    and meshes nothing on the GUI thread and the mesh is on screen when they are added; no frame that nobody
    looks at (napari's first slider position, the last t at the old k) is decoded or meshed on any thread."""
    import threading

    from lsdebm.explore import volumes as volumes_module

    viewer, w = explorer
    done = []  # (what, key or None, on the GUI thread)
    decode, mesh = volumes_module.TrajectoryVolumes._decode, volumes_module.frame_mesh

    def on_gui() -> bool:
        return threading.current_thread() is threading.main_thread()

    def decoding(self, keys, store=True):
        done.extend(("decode", key[2:4], on_gui()) for key in keys)
        return decode(self, keys, store)

    def meshing(*args, **kwargs):
        done.append(("mesh", None, on_gui()))
        return mesh(*args, **kwargs)

    monkeypatch.setattr(volumes_module.TrajectoryVolumes, "_decode", decoding)
    monkeypatch.setattr(volumes_module, "frame_mesh", meshing)
    faces_when_shown = []
    show_result = type(w).show_result

    def showing(self, *args, **kwargs):
        show_result(self, *args, **kwargs)
        faces_when_shown.append(len(self.surfaces[id(self.layer)].surface.data[1]))

    monkeypatch.setattr(type(w), "show_result", showing)
    layer = run_sample(qtbot, w, fitted_tiny_lsdebm, K=3, depth=2)
    assert layer.data.jobs.wait_idle(60)
    assert faces_when_shown and faces_when_shown[0] > 1  # the final frame's mesh, not the empty placeholder
    assert [what for what, _, gui in done if gui] == []
    n_s, n_k = layer.data.shape[:2]
    final = (n_s - 1, n_k - 1)
    assert done[0][:2] == ("decode", final)  # first, on the worker thread
    # besides it, only its neighbours (prefetched for the next slider step)
    assert {key for what, key, _ in done if what == "decode"} <= {final, (n_s - 2, n_k - 1), (n_s - 1, n_k - 2)}
    assert not layer.visible and viewer.layers[f"{layer.name} (mesh)"].visible
    assert "lsdebm_opens_at" not in layer.metadata


def test_reopened_trajectory_draws_a_surface_that_follows_t_and_k(explorer, qtbot, fitted_tiny_lsdebm, tmp_path,
                                                                  monkeypatch):
    viewer, w = explorer
    layer = run_sample(qtbot, w, fitted_tiny_lsdebm, K=3, depth=2)
    path = tmp_path / "run.npz"
    layer.save(str(path), plugin="napari-lsdebm")
    viewer.layers.remove(layer)
    assert f"{layer.name} (mesh)" not in viewer.layers  # its Surface layer went with it
    again = viewer.open(str(path), plugin="napari-lsdebm")[1]
    assert w.layer is again
    follows_t_and_k(qtbot, viewer, w, again, monkeypatch)


def test_volume_option_and_2d_show_the_image_layer(explorer, qtbot, fitted_tiny_lsdebm):
    viewer, w = explorer
    layer = run_sample(qtbot, w, fitted_tiny_lsdebm, K=2, depth=2)
    surface = viewer.layers[f"{layer.name} (mesh)"]
    w.render_combo.setCurrentText("volume")
    assert layer.visible and not surface.visible and layer.rendering == "iso"
    first = show_frame(qtbot, viewer, layer, 0, 1)  # the iso-rendered Image layer gets the decoded frame
    last = show_frame(qtbot, viewer, layer, layer.data.shape[0] - 1, 1)
    assert not np.array_equal(first, last)
    w.render_combo.setCurrentText("mesh")
    assert surface.visible and not layer.visible
    show_frame(qtbot, viewer, layer, 0, 1)
    w.view3d_box.setChecked(False)  # slices: the Image layer again
    assert viewer.dims.ndisplay == 2 and layer.visible and not surface.visible
    w.view3d_box.setChecked(True)
    assert surface.visible and not layer.visible


def test_deleting_the_trajectory_and_its_mesh_together(explorer, qtbot, fitted_tiny_lsdebm):
    """Both selected and deleted (the layer list's trash button): the explorer removed the mesh with its trajectory
    while napari's loop over the selection still had it to remove (ValueError: not in list; the rest stayed)."""
    viewer, w = explorer
    layer = run_sample(qtbot, w, fitted_tiny_lsdebm, K=2, depth=2)
    surface = viewer.layers[f"{layer.name} (mesh)"]
    others = [lay for lay in viewer.layers if lay is not layer and lay is not surface]
    viewer.layers.selection.clear()
    viewer.layers.selection.update({layer, surface})
    viewer.layers.remove_selected()
    qtbot.wait(50)
    assert layer not in viewer.layers and surface not in viewer.layers
    assert [lay for lay in viewer.layers] == others and w.layer is None


def test_a_mesh_deleted_by_hand_hands_the_trajectory_to_its_image_layer(explorer, qtbot, fitted_tiny_lsdebm):
    """The mesh deleted by hand left mesh rendering drawing nothing, for good (it kept the deleted layer)."""
    viewer, w = explorer
    layer = run_sample(qtbot, w, fitted_tiny_lsdebm, K=2, depth=2)
    viewer.layers.remove(viewer.layers[f"{layer.name} (mesh)"])
    assert layer.visible  # the Image layer draws the trajectory now
    w.render_combo.setCurrentText("volume")
    w.render_combo.setCurrentText("mesh")  # asked for again: a new Surface layer
    surface = viewer.layers[f"{layer.name} (mesh)"]
    assert surface.visible and not layer.visible
    show_frame(qtbot, viewer, layer, 0, 1)
    qtbot.waitUntil(lambda: len(surface.data[1]) > 1, timeout=RUN_TIMEOUT_MS)  # a mesh, not the placeholder


def test_live_preview_is_a_surface(explorer, qtbot, tiny_ckpts):
    from napari.layers import Surface

    viewer, w = explorer
    w.open_sample()
    assert w.checkpoint_panel.load(tiny_ckpts["lsdebm"]) is not None, w.checkpoint_panel.error.text()
    w.run_panel.K.setValue(2)
    w.run_panel.depth.setValue(1)
    w.run()
    qtbot.waitUntil(lambda: "live preview" in viewer.layers, timeout=RUN_TIMEOUT_MS)  # once the input is prepared
    assert isinstance(viewer.layers["live preview"], Surface)
    qtbot.waitUntil(lambda: w.worker is None, timeout=RUN_TIMEOUT_MS)
    assert "live preview" not in viewer.layers


def test_compare_and_uncertainty_mesh_option(make_napari_viewer, tiny_pair):
    from napari.layers import Image, Surface

    from lsdebm.data.phantoms import grid_affine
    from lsdebm.review.compare import Comparison, MethodResult
    from napari_lsdebm._ui.layers import volume_layer
    from napari_lsdebm.widgets.compare import show_comparison

    viewer = make_napari_viewer()
    hq = tiny_pair[0]
    data, kwargs, _ = volume_layer(hq, grid_affine(16, 8.0), "HQ")
    source = viewer.add_labels(data, **kwargs)
    comparison = Comparison([MethodResult("input", "raw input", hq, None, None, 0.0, {})], grid_affine(16, 8.0),
                            (8.0,) * 3)
    cells = show_comparison(viewer, comparison, source)  # mesh: the default (deliberately, as in the explorer)
    assert isinstance(cells[0], Surface) and len(cells[0].data[1]) > 0
    assert np.array_equal(viewer.layers[f"{cells[0].name} (mask)"].data, hq)  # the mask, hidden beside it
    inside = np.argwhere(hq > 0) * 8.0
    assert np.all(cells[0].data[0] >= inside.min(0) - 8.0) and np.all(cells[0].data[0] <= inside.max(0) + 8.0)
    assert cells[0].metadata["frame"] == "grid-mm"  # the export dock maps it to world mm with the affine
    cells = show_comparison(viewer, comparison, source, render="volume")
    assert isinstance(cells[0], Image) and cells[0].rendering == "iso"
    cells = show_comparison(viewer, comparison, source, ndisplay=2, render="mesh")  # slices stay volumes
    assert isinstance(cells[0], Image)
    from types import SimpleNamespace

    from napari_lsdebm.widgets.uncertainty import UncertaintyWidget

    widget = UncertaintyWidget(viewer)
    assert widget.render.currentText() == "mesh"  # the default (deliberately, as in the explorer)
    mean = hq.astype(np.float32) * 0.8
    variance = mean * (1 - mean)
    widget._show((SimpleNamespace(mean=mean, variance=variance, n=3), {}, source), source, "lsdebm")
    surface = viewer.layers["mean surface (LSD-EBM, N=3)"]
    vertices, faces, values = surface.data
    assert isinstance(surface, Surface) and len(faces) > 0 and len(values) == len(vertices)
    assert values.max() <= variance.max() and not viewer.layers["mean probability (LSD-EBM, N=3)"].visible
    # a settled surface (variance 0) is drawn light, not black on the black canvas; the dock's bar has its colours
    low, high = surface.colormap.map(np.array([0.0, 1.0]))[:, :3]
    assert low.mean() > 0.6 and high[0] > 0.6 > high[1]
    assert "mean surface" in widget.colour_bar.label
