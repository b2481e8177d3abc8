"""Surface view: a smooth mesh of any mask, coloured by signed distance (mm) to a reference surface.

The mesh is built in a worker thread (:func:`lsdebm.review.surface.distance_surface`) and shown
as a Surface layer with a diverging colormap, symmetric limits and napari's colour-bar overlay;
the widget shows the same colour bar (matplotlib) with the sign convention spelled out.
"""
from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels
from napari.utils.colormaps import Colormap
from qtpy.QtWidgets import QDoubleSpinBox, QFormLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from lsdebm.errors import InputError
from lsdebm.review.roi import reviewed_pair
from lsdebm.review.surface import distance_surface, mask_mesh, symmetric_limit
from napari_lsdebm._ui.docking import dock_viewer
from napari_lsdebm._ui.gl_context import keep_canvas_current
from napari_lsdebm._ui.jobs import Outcome, start_job
from napari_lsdebm._ui.legends import ColourBar, show_canvas_note, show_layer_colorbar
from napari_lsdebm._ui.pickers import (
    LayerCombo,
    camera_of,
    fit_view,
    geometry_kwargs,
    on_grid_of,
    put_layer,
    spacing_of,
)
from napari_lsdebm._ui.placement import CAMERA_ANGLES
from napari_lsdebm._ui.roles import AutoPick, pick_prediction, pick_truth
from napari_lsdebm._ui.surface_layer import hide_under_surface

SURFACE_KEY = "lsdebm_surface"
# Blue (inside the reference, under-segmented) -> white (on it) -> red (outside, over-segmented).
DISTANCE_COLORS = [(0.02, 0.19, 0.38, 1), (0.26, 0.58, 0.76, 1), (0.97, 0.97, 0.97, 1), (0.84, 0.38, 0.30, 1),
                   (0.40, 0.0, 0.05, 1)]


def distance_colormap() -> Colormap:
    return Colormap(DISTANCE_COLORS, name="lsdebm signed distance")


def distance_bar_colormap():
    """The same colours as a matplotlib colormap, for the dock's colour bar."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("lsdebm signed distance", [c[:3] for c in DISTANCE_COLORS])


class SurfaceWidget(QWidget):
    """Dock widget: mesh a mask and colour it by signed distance to a reference mask."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer = dock_viewer(napari_viewer)  # not napari's plugin proxy (docking)
        keep_canvas_current(napari_viewer)  # removed layers' GL objects die in the canvas's context
        self.worker = None
        self.mask_combo = LayerCombo(napari_viewer, (Labels, Image))
        self.ref_combo = LayerCombo(napari_viewer, (Labels, Image), optional=True)
        # as Review: the newest result against the truth, following the layers until the user picks
        self.mask_combo.avoid, self.ref_combo.avoid = self.ref_combo.layer, self.mask_combo.layer
        self.autopicks = (AutoPick(napari_viewer, self.ref_combo, pick_truth),
                          AutoPick(napari_viewer, self.mask_combo, pick_prediction))
        self.smooth = QSpinBox(minimum=0, maximum=500, value=20)
        self.pass_band = QDoubleSpinBox(minimum=0.001, maximum=1.99, value=0.1, singleStep=0.05, decimals=3)
        self.decimate = QDoubleSpinBox(minimum=0.0, maximum=0.95, value=0.0, singleStep=0.1)
        self.label_spin = QSpinBox(maximum=100000, specialValueText="the whole mask")
        self.label_spin.setToolTip("One structure of a label map (e.g. 22 for VerSe's L3): of the reference, and of "
                                   "the mask when it holds the label")
        self.button = QPushButton("Build surface")
        self.colorbar = ColourBar()  # shown with the first surface
        self.status = QLabel("Positive distance: outside the reference (over-segmented); "
                             "negative: inside (missed).")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("mask", self.mask_combo)
        form.addRow("reference", self.ref_combo)
        form.addRow("label", self.label_spin)
        form.addRow("Taubin smoothing iterations", self.smooth)
        form.addRow("smoothing pass band", self.pass_band)
        form.addRow("decimation (fraction removed)", self.decimate)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.button)
        layout.addWidget(self.colorbar)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.button.clicked.connect(self.build)

    def build(self) -> None:
        """Mesh the chosen mask in a worker and add/update its Surface layer."""
        layer, ref = self.mask_combo.layer(), self.ref_combo.layer()
        if layer is None:
            self.status.setText("Choose a mask layer.")
            return
        label = self.label_spin.value() or None
        try:  # one structure of a label map, as Review scores it
            spacing = spacing_of(layer)  # refuses a 2D layer
            mask, reference = reviewed_pair(layer.data, layer.data if ref is None else on_grid_of(layer, ref),
                                            label, f"mask {layer.name!r}",
                                            f"mask {layer.name!r}" if ref is None else f"reference {ref.name!r}")
            if mask.shape != reference.shape:
                raise InputError(f"{layer.name!r} {mask.shape} and {ref.name!r} {reference.shape} are on different "
                                 "grids")
        except InputError as exc:
            self.status.setText(str(exc))
            return
        opts = dict(smooth_iterations=self.smooth.value(), pass_band=self.pass_band.value(),
                    decimate=self.decimate.value())
        if ref is not None:
            work = lambda job: distance_surface(mask, reference, spacing, **opts)  # noqa: E731
        else:
            work = lambda job: mask_mesh(mask, spacing, **opts)  # noqa: E731
        self.button.setEnabled(False)
        self.status.setText(f"Meshing {layer.name!r}…")
        self.worker = start_job(work, lambda outcome: self._finished(outcome, layer, ref), what="meshing")

    def _finished(self, outcome: Outcome, layer, ref) -> None:
        if outcome.status == "done":
            self._show(outcome.output, layer, ref)
        else:
            self.status.setText(outcome.message)
        self.button.setEnabled(True)
        self.worker = None

    def _in_3d(self, surface) -> str:
        """Show a 2D viewer in 3D, where a surface is whole (2D shows only its cut), fitted to the surface and seen
        obliquely; a viewer already in 3D keeps its camera. The status says so."""
        if self.viewer.dims.ndisplay == 3:
            return ""
        self.viewer.dims.ndisplay = 3
        fit_view(self.viewer, [surface])
        camera_of(self.viewer).angles = CAMERA_ANGLES  # viewer.camera is deprecated in napari 0.9
        return " The viewer is now in 3D (in 2D a surface shows only where the slice cuts it)."

    def _show(self, mesh, layer, ref):
        geo = geometry_kwargs(layer, layer.metadata.get("provenance"), **{SURFACE_KEY: True, "frame": "grid-mm",
                                                                          "mesh_options": {
                                                                              "smooth": self.smooth.value(),
                                                                              "pass_band": self.pass_band.value(),
                                                                              "decimate": self.decimate.value()}})
        # vertices are in mm along the array axes: back to the layer's own units (1 unless napari's affine scales)
        geo["scale"] = tuple(np.asarray(layer.scale, float)[-3:] / np.asarray(spacing_of(layer)))
        geo["translate"] = tuple(layer.translate)[-3:]
        name = f"surface: {layer.name}"
        hidden = hide_under_surface(layer)  # the surface is drawn instead of the mask
        if mesh.values is None:
            surface = put_layer(self.viewer, "surface", mesh.layer_data(), name, **geo)
            hidden += self._in_3d(surface)
            self.status.setText(f"{len(mesh.vertices):,} vertices, {len(mesh.faces):,} triangles.{hidden}")
            return surface
        limit = symmetric_limit(mesh.values)
        surface = put_layer(self.viewer, "surface", mesh.layer_data(), name, colormap=distance_colormap(),
                            contrast_limits=(-limit, limit), **geo)
        hidden += self._in_3d(surface)
        show_layer_colorbar(surface)  # values on the canvas; the note there gives the unit
        self.colorbar.show_bar(distance_bar_colormap(), -limit, limit, f"signed distance to {ref.name} (mm)")
        show_canvas_note(self.viewer, f"{name} · colour: signed distance to {ref.name} in mm "
                                      f"(colour bar ±{limit:.2f} mm) · red outside, blue inside")
        self.status.setText(f"{len(mesh.vertices):,} vertices; distance {mesh.values.min():+.2f} .. "
                            f"{mesh.values.max():+.2f} mm (mean |d| {abs(mesh.values).mean():.2f} mm). "
                            f"Red: outside the reference (over-segmented); blue: inside (missed).{hidden}")
        return surface
