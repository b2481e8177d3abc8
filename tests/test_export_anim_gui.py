"""Animation exports that never block: estimate, progress, Cancel, the chosen layer only (xvfb-run -a)."""
import json

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

TIMEOUT = 240_000


@pytest.fixture
def export(make_napari_viewer):
    """An export dock over a (t=4, k=3) trajectory-like layer and an unrelated visible layer."""
    from napari_lsdebm.widgets.export import ExportWidget

    viewer = make_napari_viewer()
    frames = np.zeros((4, 3, 8, 8, 8), np.float32)
    for i in range(4):
        for j in range(3):
            frames[i, j, 2:6, 2:6, 1 + i: 3 + i + j] = 1
    other = viewer.add_image(np.ones((8, 8, 8), np.float32), name="other")
    traj = viewer.add_image(frames, name="trajectory", axis_labels=("t", "k", "z", "y", "x"))
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.anim_combo.set_layer(traj)
    widget.order.setCurrentText("t and k")
    return viewer, widget, traj, other


def test_estimate_progress_and_sidecar_names_the_captured_layer(export, qtbot, tmp_path):
    import imageio.v3 as iio

    viewer, widget, traj, other = export
    assert widget.estimate.text().startswith("12 frames, about")
    seen = []
    widget._anim_progress = lambda stage, done, total, _f=widget._anim_progress: (seen.append((stage, done)),
                                                                                   _f(stage, done, total))
    widget.animation = None
    job = widget.start_animation(tmp_path / "traj.gif")
    assert job is not None and widget.anim_cancel.isEnabled() and not widget.anim_button.isEnabled()
    assert not other.visible  # only the chosen layer while capturing
    qtbot.waitUntil(lambda: widget.animation is None, timeout=TIMEOUT)
    assert "Saved" in widget.status.text(), widget.status.text()
    assert ("capturing", 12) in seen and ("encoding", 0) in seen
    assert len(iio.imread(tmp_path / "traj.gif", index=None)) == 12
    record = json.loads((tmp_path / "traj.provenance.json").read_text())
    assert record["export"]["layer"] == "trajectory" and record["export"]["captured_layers"] == ["trajectory"]
    assert other.visible and traj.visible  # restored


def test_cancel_leaves_no_file(export, qtbot, tmp_path):
    viewer, widget, traj, other = export
    step = viewer.dims.current_step
    widget.start_animation(tmp_path / "traj.mp4")
    widget.cancel_animation()
    qtbot.waitUntil(lambda: widget.animation is None, timeout=TIMEOUT)
    assert "cancelled" in widget.status.text().lower()
    assert list(tmp_path.iterdir()) == []  # no file, no sidecar, no temporary file
    assert other.visible and viewer.dims.current_step == step


def test_cancel_while_encoding_leaves_no_file(export, qtbot, tmp_path):
    from lsdebm.review.animation import export_animation
    from lsdebm.tasks.progress import Cancelled

    with pytest.raises(Cancelled):
        export_animation(tmp_path / "x.gif", [np.zeros((8, 8, 3), np.uint8)] * 2, should_stop=lambda: True)
    assert list(tmp_path.iterdir()) == []


def test_hidden_or_missing_layer_is_refused(export, tmp_path):
    viewer, widget, traj, other = export
    traj.visible = False
    assert widget.start_animation(tmp_path / "traj.gif") is None
    assert "hidden" in widget.status.text() and not list(tmp_path.iterdir())
    with pytest.raises(Exception, match="hidden"):
        widget.save_animation(tmp_path / "traj.gif")
    assert other.visible and not list(tmp_path.iterdir())
