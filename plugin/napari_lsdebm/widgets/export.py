"""Export: masks as NIfTI (original grid and affine), meshes (STL/PLY/OBJ/VTP), screenshots, and an
animation (GIF/MP4) of a trajectory layer scrubbed along t (and k). Every file gets a provenance
sidecar (``name.provenance.json``): checkpoints by sha256, seed, settings, versions.

An animation shows its frame count and a time estimate before it starts, captures in chunks on
the GUI thread and encodes on a worker (:class:`napari_lsdebm._ui.capture.AnimationJob`), with a
progress bar and Cancel; it shows exactly the chosen layer and its sidecar names what it showed.
"""
from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels, Surface
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from lsdebm.provenance import make_provenance
from lsdebm.review.animation import animation_estimate, check_animation_target, export_animation
from lsdebm.review.export import export_image, export_mask, export_mesh
from napari_lsdebm._ui.capture import (
    SECONDS_PER_FRAME,
    AnimationJob,
    capture_frames,
    frame_order,
    shown_layers,
    time_axes,  # noqa: F401 - re-exported (scripts, tests)
)
from napari_lsdebm._ui.docking import dock_viewer
from napari_lsdebm._ui.gl_context import keep_canvas_current
from napari_lsdebm._ui.jobs import Outcome, error_text
from napari_lsdebm._ui.layer_records import layer_provenance, surface_mesh
from napari_lsdebm._ui.pickers import LayerCombo, affine_of, grid_of, is_mask_layer, mask_of
from napari_lsdebm._ui.roles import AutoPick, newest, pick_prediction

MESH_FORMATS = ("stl", "ply", "obj", "vtp")
ORDERS = {"t (diffusion step)": "t", "k (Langevin iteration)": "k", "t and k": "tk"}


def viewer_provenance(viewer) -> dict:
    """Provenance of a screenshot: every visible layer's record and the union of their checkpoints."""
    layers = {lay.name: layer_provenance(lay) for lay in viewer.layers if lay.visible}
    checkpoints = {c.get("sha256"): c for rec in layers.values() for c in rec.get("checkpoints", []) if c.get("sha256")}
    seeds = {rec.get("seed") for rec in layers.values() if rec.get("seed") is not None}
    return make_provenance(list(checkpoints.values()), seeds.pop() if len(seeds) == 1 else None, {},
                           extra={"layers": layers, "ndisplay": viewer.dims.ndisplay, "grid": grid_of(viewer).enabled})


class ExportWidget(QWidget):
    """Dock widget: save masks, meshes, screenshots and animations, each with a provenance sidecar."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer = dock_viewer(napari_viewer)  # not napari's plugin proxy (docking)
        keep_canvas_current(napari_viewer)  # removed layers' GL objects die in the canvas's context
        self.mask_combo = LayerCombo(napari_viewer, (Labels, Image), accept=is_mask_layer)
        self.mesh_combo = LayerCombo(napari_viewer, (Surface,))
        # the newest result (else the input) and the newest surface, until the user picks (as Review, Surface)
        self.autopicks = (AutoPick(napari_viewer, self.mask_combo, pick_prediction),
                          AutoPick(napari_viewer, self.mesh_combo, newest))
        self.formats = {f: QCheckBox(f.upper(), checked=f in ("stl", "vtp")) for f in MESH_FORMATS}
        self.anim_combo = LayerCombo(napari_viewer, (Image, Labels), accept=lambda lay: lay.ndim >= 4)
        self.order = QComboBox()
        self.order.addItems(ORDERS)
        self.fps = QSpinBox(minimum=1, maximum=60, value=8)
        self.estimate = QLabel()
        self.estimate.setWordWrap(True)
        self.anim_progress = QProgressBar(maximum=1, value=0)
        self.anim_cancel = QPushButton("Cancel", enabled=False)
        self.anim_cancel.clicked.connect(self.cancel_animation)
        self.animation = None  # the running AnimationJob
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self._group("Mask → NIfTI (original grid and affine)", [("layer", self.mask_combo)],
                                     "Save NIfTI…", self._save_mask_dialog))
        fmt = QWidget()
        row = QHBoxLayout(fmt)
        row.setContentsMargins(0, 0, 0, 0)
        for box in self.formats.values():
            row.addWidget(box)
        layout.addWidget(self._group("Mesh (world mm)", [("surface", self.mesh_combo), ("formats", fmt)],
                                     "Save mesh…", self._save_mesh_dialog))
        layout.addWidget(self._group("Screenshot of the canvas", [], "Save screenshot…", self._save_shot_dialog))
        anim = self._group("Animation of a trajectory", [("layer", self.anim_combo), ("along", self.order),
                                                         ("frames/s", self.fps), ("estimate", self.estimate)],
                           "Save animation…", self._save_anim_dialog)
        self.anim_button = anim.findChild(QPushButton)
        anim.layout().addRow(self.anim_progress)
        anim.layout().addRow(self.anim_cancel)
        layout.addWidget(anim)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.anim_combo.layer_changed.connect(self.update_estimate)
        self.order.currentIndexChanged.connect(self.update_estimate)
        self.update_estimate()

    @staticmethod
    def _group(title, rows, button_text, slot) -> QGroupBox:
        box = QGroupBox(title)
        form = QFormLayout(box)
        for label, widget in rows:
            form.addRow(label, widget)
        button = QPushButton(button_text)
        button.clicked.connect(slot)
        form.addRow(button)
        return box

    # --- exports (paths given; used by the dialogs and by tests) ---
    def save_mask(self, path, overwrite: bool = False):
        layer = self.mask_combo.layer()
        data = np.asarray(layer.data) if isinstance(layer, Labels) else mask_of(layer).astype(np.uint8)
        return export_mask(path, data, affine_of(layer), layer_provenance(layer), overwrite=overwrite)

    def save_mesh(self, path, overwrite: bool = False):
        layer = self.mesh_combo.layer()
        mesh, affine = surface_mesh(layer)
        formats = tuple(f for f, box in self.formats.items() if box.isChecked()) or ("stl",)
        return export_mesh(path, mesh, affine, layer_provenance(layer), overwrite, formats)

    def save_screenshot(self, path, overwrite: bool = False):
        image = self.viewer.screenshot(canvas_only=True, flash=False)
        return export_image(path, image, viewer_provenance(self.viewer), overwrite)

    def update_estimate(self, *_) -> str:
        """Show (and return) the chosen animation's frame count and capture-time estimate."""
        layer = self.anim_combo.layer()
        try:
            n = len(frame_order(self.viewer, layer, ORDERS[self.order.currentText()])) if layer is not None else 0
        except Exception as exc:  # noqa: BLE001 - shown to the user
            n, text = 0, error_text(exc)
        else:
            text = animation_estimate(n, SECONDS_PER_FRAME["value"]) if n else "choose a trajectory layer"
        self.estimate.setText(text)
        return text

    def save_animation(self, path, overwrite: bool = False):
        """Capture and write at once, blocking (scripts and tests; the dock uses :meth:`start_animation`)."""
        layer = self.anim_combo.layer()
        along = ORDERS[self.order.currentText()]
        shown = [lay.name for lay in shown_layers(self.viewer, layer)]
        frames = capture_frames(self.viewer, layer, along,
                                lambda i, n: self.status.setText(f"frame {i} / {n}"))
        return export_animation(path, frames, self.fps.value(), layer_provenance(layer), overwrite,
                                along=along, layer=layer.name, captured_layers=shown)

    def start_animation(self, path, overwrite: bool = False) -> AnimationJob | None:
        """Start an animation export that never blocks the GUI; returns the job (None if refused)."""
        if self.animation is not None:
            self.status.setText("An animation export is already running; cancel it first.")
            return None
        layer, along, fps = self.anim_combo.layer(), ORDERS[self.order.currentText()], self.fps.value()
        provenance = layer_provenance(layer) if layer is not None else None

        def write(frames, grabber, job):  # on the worker thread
            return export_animation(path, frames, fps, provenance, overwrite, should_stop=job.cancelled,
                                    along=along, layer=grabber.layer.name, captured_layers=grabber.captured)
        try:  # a name the writer would refuse is refused before the capture, not after it
            check_animation_target(path, overwrite)
            self.animation = AnimationJob(self.viewer, layer, along, write, self._anim_progress, self._anim_done)
        except Exception as exc:  # noqa: BLE001 - a hidden or missing layer: one line in the dock
            self.status.setText(f"Not saved: {error_text(exc)}")
            return None
        self.status.setText(f"Exporting {self.update_estimate()}…")
        self.anim_button.setEnabled(False)
        self.anim_cancel.setEnabled(True)
        return self.animation.start()

    def cancel_animation(self) -> None:
        """Stop the running animation export; no file is left behind."""
        if self.animation is not None:
            self.animation.cancel()
            self.status.setText("Cancelling the animation export…")

    def _anim_progress(self, stage: str, done: int, total: int) -> None:
        self.anim_progress.setRange(0, total)
        self.anim_progress.setValue(done)
        self.status.setText(f"capturing frame {done:,} / {total:,}…" if stage == "capturing" else "encoding…")

    def _anim_done(self, outcome: Outcome) -> None:
        self.animation = None
        self.anim_button.setEnabled(True)
        self.anim_cancel.setEnabled(False)
        if outcome.status == "done":
            path, side = outcome.output
            self.status.setText(f"Saved {path} (+ {side.name})")
        else:
            self.status.setText(outcome.message if outcome.status == "cancelled" else f"Not saved: {outcome.message}")
        self.update_estimate()

    # --- dialogs ---
    def _ask(self, title, default, filters):
        path, _ = QFileDialog.getSaveFileName(self, title, default, filters)
        return path

    def _run(self, fn, path) -> None:
        if not path:
            return
        try:
            out = fn(path, overwrite=True)  # the file dialog already confirmed replacing
            files = out[0] if isinstance(out[0], list) else [out[0]]
            self.status.setText("Saved " + ", ".join(str(f) for f in files) + f" (+ {out[1].name})")
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.status.setText(f"Not saved: {error_text(exc)}")

    def _save_mask_dialog(self):
        if self.mask_combo.layer() is not None:
            self._run(self.save_mask, self._ask("Save mask", f"{self.mask_combo.currentText()}.nii.gz",
                                                "NIfTI (*.nii.gz *.nii)"))

    def _save_mesh_dialog(self):
        if self.mesh_combo.layer() is not None:
            self._run(self.save_mesh, self._ask("Save mesh (one file per ticked format)", "surface.stl",
                                                "Meshes (*.stl *.ply *.obj *.vtp)"))

    def _save_shot_dialog(self):
        self._run(self.save_screenshot, self._ask("Save screenshot", "screenshot.png", "PNG (*.png)"))

    def _save_anim_dialog(self):
        if self.anim_combo.layer() is not None:
            path = self._ask("Save animation", "trajectory.gif", "Animations (*.gif *.mp4)")
            if path:
                self.start_animation(path, overwrite=True)  # the file dialog already confirmed replacing
