"""Regenerate the README's screenshots of the docks (needs a display: run under xvfb-run).

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshots.py [--out docs/img]

Each picture is a fresh napari window at 1280x800 driven as a person would: the explorer on the
real sample (bundled LSD-EBM, a 3D mesh at a reverse step), Compare (grid of the four methods),
Review (TP/FP/FN overlap with an ROI box, and the metrics table) and the teaching dock (digits from noise). The
whole window is grabbed, so the docks are in the picture.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import imageio.v3 as iio
import napari
import numpy as np
from qtpy.QtWidgets import QApplication

SIZE = (1280, 800)
REAL_INPUT = "LQ 5 mm sagittal (L3, VerSe 2019, CC BY-SA 4.0)"


def wait(condition, timeout: float = 600.0) -> None:
    """Process Qt events until ``condition()`` holds (RuntimeError after ``timeout`` seconds)."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {condition}")
        QApplication.processEvents()
        time.sleep(0.02)


def settle(seconds: float = 1.0) -> None:
    wait(lambda end=time.monotonic() + seconds: time.monotonic() > end)


def new_viewer():
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*SIZE)
    settle(0.5)
    return viewer


def tidy(viewer) -> None:
    """Close notification pop-ups and keep the layer docks narrow so the canvas text fits."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtCore import Qt

    window = viewer.window._qt_window
    for note in window.findChildren(NapariQtNotification):
        note.close()
    qt_viewer = viewer.window._qt_viewer
    docks = [qt_viewer.dockLayerControls, qt_viewer.dockLayerList]
    window.resizeDocks(docks, [200] * len(docks), Qt.Orientation.Horizontal)


def grab(viewer, path: Path, reset: bool = False) -> None:
    """Write the whole window (canvas and docks) as PNG; ``reset`` fits the view to the final canvas size."""
    tidy(viewer)
    settle(1.0)
    if reset:
        viewer.reset_view()
    settle(1.0)
    image = viewer.screenshot(canvas_only=False, flash=False)
    iio.imwrite(path, np.asarray(image)[..., :3])
    print(f"wrote {path} {image.shape[1]}x{image.shape[0]}")


def explorer_shot(out: Path) -> None:
    from lsdebm.runtime.checkpoint import bundled_checkpoints

    viewer = new_viewer()
    viewer.open_sample("napari-lsdebm", "real_pair")
    _, w = viewer.window.add_plugin_dock_widget("napari-lsdebm", "LSD-EBM explorer")
    w.input_combo.setCurrentText(REAL_INPUT)
    panel = w.checkpoint_panel
    panel.combo.setCurrentIndex(panel.combo.findData(str(bundled_checkpoints()["lsdebm-default"])))
    panel.load_button.click()
    w.run_panel.K.setValue(30)
    w.run_panel.run_button.click()
    wait(lambda: w.worker is None)
    labels = list(viewer.dims.axis_labels)
    n_s = w.layer.data.shape[0]
    viewer.dims.set_current_step(labels.index("t"), n_s - 2)  # reverse t=1
    viewer.dims.set_current_step(labels.index("k"), 10)
    assert w.layer.data.jobs.wait_idle(60)
    grab(viewer, out / "explorer.png")
    viewer.close()


def draw_roi(viewer, review) -> None:
    """Press "New ROI box" and draw a rectangle over the upper half of the prediction on its middle slice.

    The rectangle spans all slices (a prism), so the table gains an ROI row beside the whole volume.
    """
    pred = review.pred_combo.layer()
    review.roi_button.click()
    roi = review.roi_combo.layer()
    voxels = np.argwhere(np.asarray(pred.data) > 0.5)
    lo, hi = voxels.min(0), voxels.max(0)
    mid = (lo + hi) / 2
    viewer.dims.set_point(0, pred.data_to_world(mid)[0])  # the slice the rectangle is drawn on
    (y0, x0), (y1, x1) = (lo[1] - 1, lo[2] - 1), (mid[1], hi[2] + 1)
    roi.add_rectangles(np.array([[mid[0], y0, x0], [mid[0], y0, x1], [mid[0], y1, x1], [mid[0], y1, x0]]))
    roi.mode = "pan_zoom"


def compare_and_review_shots(out: Path) -> None:
    from napari_lsdebm.widgets.compare import CompareWidget
    from napari_lsdebm.widgets.review import ReviewWidget

    viewer = new_viewer()
    viewer.open_sample("napari-lsdebm", "real_pair")
    compare = CompareWidget(viewer)
    viewer.window.add_dock_widget(compare, name="Compare methods")
    compare.run_button.click()
    wait(lambda: compare.worker is None and compare.comparison is not None)
    grab(viewer, out / "compare.png")
    viewer.window.remove_dock_widget(compare)  # room for the review table
    review = ReviewWidget(viewer)
    viewer.window.add_dock_widget(review, name="Review metrics and overlap")
    compare.toggle_grid()  # grid off: one overlap view
    overlap = review.show_overlap()
    draw_roi(viewer, review)  # a 2D slice, as napari draws shapes there
    for layer in viewer.layers:
        layer.visible = layer is overlap or layer is review.roi_combo.layer()
    viewer.reset_view()
    wait(lambda: review.worker is None and review.table.rowCount() > 1)
    grab(viewer, out / "review.png", reset=True)
    viewer.close()


def teaching_shot(out: Path) -> None:
    from napari_lsdebm.widgets.teach import TeachingWidget

    viewer = new_viewer()
    teach = TeachingWidget(viewer)
    viewer.window.add_dock_widget(teach, name="Teaching - generate digits")
    teach.generate_button.click()
    wait(lambda: teach.generate_button.isEnabled() and teach.worker is None)
    grab(viewer, out / "teaching.png")
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/img", type=Path)
    parser.add_argument("--only", choices=("explorer", "compare", "teaching"), action="append")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shots = {"explorer": explorer_shot, "compare": compare_and_review_shots, "teaching": teaching_shot}
    for name in args.only or shots:
        shots[name](args.out)


if __name__ == "__main__":
    main()
