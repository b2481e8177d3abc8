"""The frame under the t and k sliders drawn as a Surface layer (mesh rendering of a trajectory).

The decoded-trajectory Image layer (t, k, Z, Y, X) keeps the sliders, the plots and the file
writer; in mesh mode in 3D it is hidden (napari then never ray-casts it) and a Surface layer
beside it shows the iso-surface of the frame under the sliders. Meshes are made on the decode
thread together with the frame and cached with it (:meth:`TrajectoryVolumes.request_mesh`), so
a slider move only hands cached triangles to the canvas, and a revisited frame is not meshed
again. In 2D, or with ``render="volume"``, the Image layer is shown as before.
"""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import QObject, QTimer

from lsdebm.review.surface import Mesh, empty_mesh
from napari_lsdebm._ui.placement import placed_layer, placement_of
from napari_lsdebm._ui.surface_layer import RENDER_MODES, add_mesh_layer, keep_shaders, set_mesh, spatial
from napari_lsdebm._ui.trajectory_layer import (
    OPENS_AT_KEY,
    FrameRefresher,
    real_layer,
    slider_axes,
    trajectory_of,
)

SURFACE_OF_KEY = "lsdebm_surface_of"  # metadata of the Surface layer: the name of its trajectory layer


class TrajectorySurface(QObject):
    """Keeps a Surface layer on the frame under the sliders of one trajectory Image layer."""

    def __init__(self, viewer, layer, refresher: FrameRefresher, render: str = "mesh") -> None:
        super().__init__()
        self.viewer, self.layer = viewer, real_layer(layer)
        self.volumes = self.layer.data
        self.volumes.mesh_spacing = spatial(self.layer.scale, 1.0)
        self.render = render
        self.surface = None
        self.shown: Mesh | None = None  # the mesh the Surface layer holds
        self.meshes_shown = 0  # times the Surface layer was handed a new mesh (tests, benchmarks)
        self.refresher = refresher
        refresher.ready.connect(self._on_ready)
        self.viewer.dims.events.current_step.connect(self.update)
        self.viewer.dims.events.ndisplay.connect(self._apply)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self._apply()

    @property
    def active(self) -> bool:
        """True when the Surface layer, not the Image layer, draws the trajectory."""
        return self.render == "mesh" and self.viewer.dims.ndisplay == 3

    def set_render(self, render: str) -> None:
        """Switch between ``mesh`` (Surface layer) and ``volume`` (iso-rendered Image layer)."""
        if render not in RENDER_MODES:
            raise ValueError(f"render must be one of {RENDER_MODES}; got {render!r}")
        self.render = render
        self._apply()

    def update(self, event=None, at: tuple[int, int] | None = None) -> None:
        """Show the mesh of the frame under the sliders, or at position ``at`` (t, k) (the last one stays while it
        is being made)."""
        if not self.active or self.surface is None or not self.surface.visible \
                or self.layer not in self.viewer.layers:
            return
        if at is None:
            axes = slider_axes(self.viewer, self.layer)
            if axes is None:
                return
            step = self.viewer.dims.current_step
            at = int(step[axes[0]]), int(step[axes[1]])
        # the sliders span every layer: past this trajectory's end (a longer run kept beside it, the
        # teaching dock's layers) show its last frame, as the plots' cursors do, instead of failing
        n_s, n_k = self.volumes.shape[:2]
        s, k = min(at[0], n_s - 1), min(at[1], max(n_k - 1, 0))
        mesh = self.volumes.shown_mesh(s, k)
        if mesh is not self.shown:
            self.shown = mesh
            self.meshes_shown += 1
            set_mesh(self.surface, mesh)

    def detach(self) -> None:
        """Stop following the sliders and remove the Surface layer (the Image layer shows the trajectory if
        the Surface layer did)."""
        self.viewer.dims.events.current_step.disconnect(self.update)
        self.viewer.dims.events.ndisplay.disconnect(self._apply)
        self.viewer.layers.events.removed.disconnect(self._on_layer_removed)
        self.refresher.ready.disconnect(self._on_ready)
        self.volumes.meshes = False
        surface, layers, self.surface = self.surface, self.viewer.layers, None
        if surface is None or surface not in layers:
            return
        if surface.visible and self.layer in layers:
            self.layer.visible = True
        if real_layer(surface) in layers.selection:  # deleted with the trajectory: napari's own loop removes it
            QTimer.singleShot(0, lambda: surface in layers and layers.remove(surface))  # if it did not after all
        else:
            layers.remove(surface)

    def _on_layer_removed(self, event) -> None:
        """The Surface layer deleted by hand: forget it, and let the Image layer draw the trajectory if the mesh
        did; the next switch to mesh rendering (or back to 3D) makes a new Surface layer."""
        if self.surface is None or real_layer(event.value) is not real_layer(self.surface):
            return
        if self.surface.visible and self.layer in self.viewer.layers:
            self.layer.visible = True
        self.surface, self.shown = None, None

    def _apply(self, event=None) -> None:
        """Draw the trajectory with the Surface or the Image layer (a hidden trajectory stays hidden)."""
        active = self.active
        opens_at = self.layer.metadata.pop(OPENS_AT_KEY, None)  # added hidden for the mesh, sliders about to move
        shown = opens_at is not None or self.layer.visible or (self.surface is not None and self.surface.visible)
        self.volumes.meshes = active
        if active and self.surface is None:
            placement, centre = placement_of(self.layer)
            where = placed_layer(placement, 3, centre)
            meta = {SURFACE_OF_KEY: self.layer.name}
            recorded = getattr(trajectory_of(self.layer), "metadata", {}).get("affine")
            if recorded is not None:  # the model frame's voxel-to-world affine: exports land in scanner mm
                meta["affine"] = np.asarray(recorded, float)
            self.surface = add_mesh_layer(self.viewer, empty_mesh(), f"{self.layer.name} (mesh)",
                                          where or self.layer.translate, meta, visible=shown)
            keep_shaders(self.viewer, self.surface)  # a slider step then only uploads triangles
            self.surface.events.visible.connect(self.update)
            self.shown = None
        if shown:
            if self.surface is not None and self.surface.visible != active:  # (each set refreshes and updates)
                self.surface.visible = active
            self.layer.visible = not active
        self.update(at=None if opens_at is None else tuple(opens_at))

    def _on_ready(self, key) -> None:
        if self.active and key == self.volumes.wanted:
            self.update()
