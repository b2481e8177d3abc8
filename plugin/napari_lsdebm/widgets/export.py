"""Export: masks as NIfTI (original grid and affine), meshes (STL/PLY/OBJ/VTP), screenshots, and an
animation (GIF/MP4) of a trajectory layer scrubbed along t (and k). Every file gets a provenance
sidecar (``name.provenance.json``): checkpoints by sha256, seed, settings, versions.
"""
from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels, Surface
from qtpy.QtWidgets import (QApplication, QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                            QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from lsdebm.provenance import make_provenance
from lsdebm.review.animation import export_animation, grid_order, with_progress
from lsdebm.review.export import export_image, export_mask, export_mesh
from lsdebm.review.surface import Mesh
from napari_lsdebm._ui.jobs import error_text
from napari_lsdebm._ui.pickers import LayerCombo, affine_of, grid_of, is_mask_layer, mask_of

MESH_FORMATS = ("stl", "ply", "obj", "vtp")
ORDERS = {"t (diffusion step)": "t", "k (Langevin iteration)": "k", "t and k": "tk"}


def layer_provenance(layer) -> dict:
    """The provenance a layer carries (review/pipeline layers), else one from its trajectory metadata."""
    prov = layer.metadata.get("provenance")
    if prov:
        return dict(prov)
    traj = layer.metadata.get("lsdebm_trajectory")
    meta = dict(getattr(traj, "metadata", {}) or {})
    settings = meta.get("settings", {}) if isinstance(meta.get("settings"), dict) else {}
    checkpoints = [{"role": role, "kind": kind, "sha256": meta[key], "name": meta.get(name)}
                   for role, kind, key, name in (("reconnet", "reconnet", "stage1_sha256", None),
                                                 ("method", meta.get("method"), "checkpoint_sha256", "checkpoint_name"))
                   if meta.get(key)]
    return make_provenance(checkpoints, settings.get("seed"), settings,
                           extra={"layer": layer.name, **({"trajectory": meta} if meta else {})})


def viewer_provenance(viewer) -> dict:
    """Provenance of a screenshot: every visible layer's record and the union of their checkpoints."""
    layers = {lay.name: layer_provenance(lay) for lay in viewer.layers if lay.visible}
    checkpoints = {c.get("sha256"): c for rec in layers.values() for c in rec.get("checkpoints", []) if c.get("sha256")}
    seeds = {rec.get("seed") for rec in layers.values() if rec.get("seed") is not None}
    return make_provenance(list(checkpoints.values()), seeds.pop() if len(seeds) == 1 else None, {},
                           extra={"layers": layers, "ndisplay": viewer.dims.ndisplay, "grid": grid_of(viewer).enabled})


def surface_mesh(layer) -> tuple[Mesh, np.ndarray | None]:
    """(mesh, affine) of a Surface layer: review surfaces go to world mm with their source affine."""
    vertices, faces = np.asarray(layer.data[0], float), np.asarray(layer.data[1])
    values = np.asarray(layer.data[2]) if len(layer.data) > 2 else None
    name = "signed_distance_mm" if layer.metadata.get("lsdebm_surface") and values is not None else "values"
    if layer.metadata.get("frame") == "grid-mm" and layer.metadata.get("affine") is not None:
        return Mesh(vertices, faces, values, name), np.asarray(layer.metadata["affine"], float)
    world = vertices * np.asarray(layer.scale)[-3:] + np.asarray(layer.translate)[-3:]
    return Mesh(world, faces, values, name), None


def time_axes(viewer, layer) -> tuple[int, int | None]:
    """World axes (t, k) of a layer: its ``t``/``k`` axis labels, else its first (two) leading axes."""
    labels = list(getattr(layer, "axis_labels", ()) or ())
    offset = viewer.dims.ndim - layer.ndim
    spatial = viewer.dims.ndisplay
    if "t" in labels:
        return offset + labels.index("t"), (offset + labels.index("k") if "k" in labels else None)
    lead = layer.ndim - spatial
    if lead < 1:
        raise ValueError(f"layer {layer.name!r} has no axis to animate (ndim {layer.ndim})")
    return offset, (offset + 1 if lead >= 2 else None)


def capture_frames(viewer, layer, along: str, progress=None) -> list[np.ndarray]:
    """Screenshots of the canvas while stepping the layer's t (and k) sliders; restores the sliders."""
    t_axis, k_axis = time_axes(viewer, layer)
    n_t = int(viewer.dims.nsteps[t_axis])
    n_k = int(viewer.dims.nsteps[k_axis]) if k_axis is not None else 1
    start = list(viewer.dims.current_step)
    order = grid_order(n_t, n_k, along if k_axis is not None else "t", start[t_axis],
                       start[k_axis] if k_axis is not None else 0)
    volumes = layer.data
    blocking = getattr(volumes, "nonblocking", None)
    if blocking:
        volumes.nonblocking = False  # decode synchronously so every screenshot shows its own frame
    frames, size = [], None
    try:
        for i, (t, k) in enumerate(order):
            step = list(viewer.dims.current_step)
            step[t_axis] = t
            if k_axis is not None:
                step[k_axis] = k
            viewer.dims.current_step = tuple(step)
            QApplication.processEvents()
            shot = viewer.screenshot(size=size, canvas_only=True, flash=False)
            size = size or shot.shape[:2]  # every frame at the first frame's size, even if the canvas resizes
            frames.append(with_progress(shot, (i + 1) / len(order)))
            if progress is not None:
                progress(i + 1, len(order))
    finally:
        if blocking:
            volumes.nonblocking = True
        viewer.dims.current_step = tuple(start)
    return frames


class ExportWidget(QWidget):
    """Dock widget: save masks, meshes, screenshots and animations, each with a provenance sidecar."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.mask_combo = LayerCombo(napari_viewer, (Labels, Image), accept=is_mask_layer)
        self.mesh_combo = LayerCombo(napari_viewer, (Surface,))
        self.formats = {f: QCheckBox(f.upper(), checked=f in ("stl", "vtp")) for f in MESH_FORMATS}
        self.anim_combo = LayerCombo(napari_viewer, (Image, Labels), accept=lambda lay: lay.ndim >= 4)
        self.order = QComboBox()
        self.order.addItems(ORDERS)
        self.fps = QSpinBox(minimum=1, maximum=60, value=8)
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
        layout.addWidget(self._group("Animation of a trajectory", [("layer", self.anim_combo), ("along", self.order),
                                                                   ("frames/s", self.fps)],
                                     "Save animation…", self._save_anim_dialog))
        layout.addWidget(self.status)
        layout.addStretch(1)

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

    def save_animation(self, path, overwrite: bool = False):
        layer = self.anim_combo.layer()
        along = ORDERS[self.order.currentText()]
        frames = capture_frames(self.viewer, layer, along,
                                lambda i, n: self.status.setText(f"frame {i} / {n}"))
        return export_animation(path, frames, self.fps.value(), layer_provenance(layer), overwrite,
                                along=along, layer=layer.name)

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
            self._run(self.save_animation, self._ask("Save animation", "trajectory.gif", "Animations (*.gif *.mp4)"))
