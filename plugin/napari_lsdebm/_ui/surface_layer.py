"""Probability volumes drawn in 3D as napari Surface layers (the one helper every dock uses).

In software OpenGL (llvmpipe, Xvfb, remote desktops) ray casting the iso-surface of an Image
layer takes seconds per frame, while the same surface as ~10k triangles draws in tens of
milliseconds. ``render="mesh"`` shows the p = 0.5 iso-surface as a Surface layer;
``render="volume"`` keeps the iso-rendered Image layer.

Meshes are in the *grid-mm frame* (vertex = voxel index * spacing, as the Surface dock makes
them): the Surface layer has scale 1 and the Image layer's spatial translate, so it lies exactly
where the Image layer's iso-surface would, and the export dock maps it to world mm with the
affine in its metadata.
"""
from __future__ import annotations

import numpy as np

from lsdebm.explore.meshes import LEVEL, frame_mesh
from lsdebm.review.surface import Mesh

RENDER_MODES = ("mesh", "volume")
SURFACE_COLORMAP = "bone"
# napari cannot draw a Surface layer without triangles: an empty mesh is one triangle of zero area
_EMPTY = (np.zeros((3, 3), np.float32), np.array([[0, 1, 2]], np.int32))


def spatial(values, fill: float) -> tuple[float, ...]:
    """The last three entries of a layer's scale or translate (``fill`` when there is none)."""
    values = tuple(float(v) for v in np.atleast_1d(values)) if values is not None else ()
    return ((fill,) * 3 + values)[-3:]


def surface_data(mesh: Mesh) -> tuple:
    """``(vertices, faces[, values])`` for a Surface layer; an empty mesh becomes one invisible triangle."""
    if len(mesh.faces) == 0:
        return _EMPTY if mesh.values is None else _EMPTY + (np.zeros(3, np.float32),)
    return mesh.layer_data()


def sample_at_vertices(volume, mesh: Mesh, scale=None) -> np.ndarray:
    """Values of ``volume`` at the voxels nearest to each grid-mm vertex of ``mesh`` (e.g. variance)."""
    volume = np.asarray(volume)
    index = np.rint(np.asarray(mesh.vertices) / np.asarray(spatial(scale, 1.0))).astype(np.int64)
    index = np.clip(index, 0, np.array(volume.shape) - 1)
    return volume[tuple(index.T)].astype(np.float32)


def mesh_kwargs(name: str, translate=None, metadata: dict | None = None, **style) -> dict:
    """Surface layer kwargs for grid-mm vertices drawn at the spatial ``translate`` of an Image layer, or where
    :func:`napari_lsdebm._ui.placement.placed_layer` says (a model frame on its input)."""
    meta = dict(metadata or {})
    if meta.get("affine") is not None:
        meta["frame"] = "grid-mm"  # the export dock maps grid-mm vertices to world mm with the affine
    if isinstance(translate, dict):  # placed on its input (napari_lsdebm._ui.placement.placed_layer)
        where = dict(translate)
        meta.update(where.pop("metadata", {}))
    else:
        where = {"translate": spatial(translate, 0.0)}
    return {"name": name, **where, "scale": (1.0, 1.0, 1.0), "metadata": meta,
            "colormap": SURFACE_COLORMAP, "shading": "smooth", **style}


def add_mesh_layer(viewer, mesh: Mesh, name: str, translate=None, metadata: dict | None = None, **style):
    """Add ``mesh`` (grid-mm vertices) as a Surface layer placed like an Image layer at ``translate`` (or as
    :func:`napari_lsdebm._ui.placement.placed_layer` says)."""
    return viewer.add_surface(surface_data(mesh), **mesh_kwargs(name, translate, metadata, **style))


def set_mesh(layer, mesh: Mesh) -> None:
    """Replace a Surface layer's triangles (an empty mesh draws nothing)."""
    layer.data = surface_data(mesh)


def keep_shaders(viewer, layer) -> None:
    """Stop vispy recompiling a Surface layer's shaders each time its triangles are replaced.

    vispy's MeshVisual builds a new colour-transform shader function on every data update, so
    every new mesh costs a shader compile and link per view (about 50 ms a slider step in
    software OpenGL). That function depends only on the kind of colours, the contrast limits and
    the colormap, so the visual gets it back unchanged while those stay the same. Without a Qt
    canvas (headless viewers) this does nothing.
    """
    viewer, layer = (getattr(x, "__wrapped__", x) for x in (viewer, layer))  # not napari's plugin proxies
    canvas = getattr(getattr(getattr(viewer, "window", None), "_qt_viewer", None), "canvas", None)
    visual = getattr(canvas, "layer_to_visual", {}).get(layer)
    node = getattr(visual, "node", None)
    build = getattr(node, "_build_color_transform", None)
    if build is None or getattr(build, "keeps_shaders", False):
        return
    made: dict = {}

    def color_transform(colors):
        key = (colors.ndim == 2 and colors.shape[1] == 1, tuple(map(float, node._clim_values)),
               node.cmap.glsl_map)
        if key not in made:
            made.clear()
            made[key] = build(colors)
        return made[key]

    color_transform.keeps_shaders = True
    node._build_color_transform = color_transform


def volume_mesh(volume, scale=None, level: float = LEVEL) -> Mesh:
    """The ``level`` iso-surface of a probability or {0, 1} volume in the grid-mm frame of ``scale``."""
    return frame_mesh(np.asarray(volume, np.float32), level, spacing=spatial(scale, 1.0))


def add_volume_layer(viewer, volume, name: str, render: str = "mesh", colormap=SURFACE_COLORMAP,
                     scale=None, translate=None, metadata: dict | None = None, values=None, **kwargs):
    """Add a 3D probability (or {0, 1}) volume as an iso-surface: a Surface layer or an iso Image layer.

    Args:
        viewer: The napari viewer.
        volume: (Z, Y, X) values; the surface is at p = 0.5.
        name: Layer name.
        render: ``mesh`` (Surface layer) or ``volume`` (Image layer, ``rendering="iso"``).
        colormap: Colormap of either layer.
        scale, translate, metadata: Geometry as the Image layer would have it.
        values: Optional volume whose nearest voxel colours each vertex (mesh only; e.g. a variance).
        **kwargs: Further layer kwargs (e.g. ``visible``).
    """
    if render not in RENDER_MODES:
        raise ValueError(f"render must be one of {RENDER_MODES}; got {render!r}")
    if render == "mesh":
        mesh = volume_mesh(volume, scale)
        if values is not None:
            mesh = Mesh(mesh.vertices, mesh.faces, sample_at_vertices(values, mesh, scale))
        return add_mesh_layer(viewer, mesh, name, translate, metadata, colormap=colormap, **kwargs)
    # float16: napari's iso rendering of uint8/bool {0, 1} images draws nothing
    data = volume.astype(np.float16) if volume.dtype.kind in "biu" else volume
    geometry = {k: v for k, v in (("scale", scale), ("translate", translate)) if v is not None}
    return viewer.add_image(data, name=name, rendering="iso", iso_threshold=LEVEL, contrast_limits=(0, 1),
                            colormap=colormap, metadata=dict(metadata or {}), **geometry, **kwargs)


def hide_under_surface(layer) -> str:
    """Hide ``layer`` (a mask or input whose volume would hide, in 3D, the surface drawn from it) and return the
    sentence for the status line ("" when it was already hidden)."""
    if not layer.visible:
        return ""
    layer.visible = False
    return f" Layer '{layer.name}' is hidden (its eye shows it again)."
