"""Layers of a finished run: the reconstruction (Labels) and the (t, k) trajectory (Image).

Model-frame layers carry the model spacing as scale and the crop's (or source's) affine in their
metadata, which the NIfTI writer uses. When the input had to be cropped, the reconstruction is
also pasted back: into the input layer's grid, or for an anisotropic (thick-slice) input onto an
isotropic grid at its finest spacing over the same field of view (:mod:`lsdebm.data.grids`), so the
refinement's through-plane detail is kept.
"""
from __future__ import annotations

import logging

import numpy as np

from lsdebm.explore import RunOutput, TrajectoryVolumes, make_decoder
from lsdebm.explore.decode_cache import DecodeCache
from lsdebm.explore.result import result_layer_data
from napari_lsdebm._ui.checkpoint_panel import KIND_NAMES
from napari_lsdebm._ui.pickers import camera_of, drawn_as, fit_view
from napari_lsdebm._ui.placement import aim_camera, follow_display, frame_centre, placed_layer
from napari_lsdebm._ui.roles import RESULT, role_metadata
from napari_lsdebm._ui.trajectory_layer import OPENS_AT_KEY, slider_axes, trajectory_layer_data

log = logging.getLogger(__name__)


def pasted_layer(output: RunOutput, crop, src, model=None, computed=None) -> tuple[np.ndarray, dict]:
    """The reconstruction pasted out of the model grid, with its layer scale, translate and metadata.

    An anisotropic input gets the isotropic output grid (probabilities pasted linearly, thresholded
    there); otherwise, or when that grid would be too large, the input layer's grid. ``kwargs['grid']``
    names the grid ("input grid" or "output grid"). With the run's ``model`` the probabilities go
    through its measurement-aware output step, as ``lsdebm reconstruct`` does
    (:func:`lsdebm.explore.result.result_layer_data`; ``computed`` is its value when the worker
    already made it).
    """
    mask, grid = computed if computed is not None else \
        result_layer_data(output, crop, getattr(src, "data", None), model)
    if grid is None:
        return mask, {"scale": src.scale, "translate": src.translate, "metadata": dict(src.metadata),
                      "grid": "input grid", **drawn_as(src)}
    shape, affine = grid
    # same orientation: old index = diag(ratio) @ new index + offset, so the layer is scaled and shifted
    old_from_new = np.linalg.inv(crop.source_affine) @ affine
    src_scale, src_translate = np.asarray(src.scale, float)[-3:], np.asarray(src.translate, float)[-3:]
    return mask, {"scale": tuple(np.diag(old_from_new)[:3] * src_scale),
                  "translate": tuple(old_from_new[:3, 3] * src_scale + src_translate),
                  "metadata": {**dict(src.metadata), "affine": affine}, "grid": "output grid", **drawn_as(src)}


def final_position(traj) -> tuple[int, int]:
    """(frame, k index) a finished run opens at: the last reverse step, the last recorded iteration."""
    return traj.n_frames - 1, max(traj.n_k - 1, 0)


def result_volumes(ckpt, traj, cache: DecodeCache) -> TrajectoryVolumes:
    """The lazily decoded frames of a run's trajectory, meshed at the model spacing (the trajectory layer's scale,
    which the mesh view reads too)."""
    m = ckpt.config.model
    volumes = TrajectoryVolumes(traj, make_decoder(ckpt.model), (m.grid,) * 3, cache=cache)
    volumes.mesh_spacing = (float(m.spacing),) * 3
    return volumes


def preload_result(ctx: dict, cache: DecodeCache, mesh: bool):
    """``output -> output`` for the end of a run's worker thread: it makes the result's lazily decoded trajectory
    (``ctx["volumes"]``) and decodes its final frame into ``cache``, meshed too when ``mesh`` (the frame will be
    drawn as a mesh), so that showing the result on the GUI thread neither decodes, meshes nor waits for it."""
    def preload(output: RunOutput) -> RunOutput:
        volumes = result_volumes(ctx["ckpt"], output.trajectory, cache)
        try:
            volumes.preload(*final_position(output.trajectory), mesh=mesh)
        except Exception:  # noqa: BLE001 - only a head start: the viewer decodes the frame itself, as before
            log.exception("napari-lsdebm: the final frame could not be decoded ahead of the viewer")
        ctx["volumes"] = volumes
        return output
    return preload


def add_result_layers(viewer, output: RunOutput, ctx: dict, cache: DecodeCache, ndisplay: int = 3,
                      render: str = "volume"):
    """Add the result layers of ``output`` and show its final frame; returns the trajectory layer.

    ``ctx`` holds ``ckpt`` (the LoadedCheckpoint that ran), ``source`` (input layer), ``crop``
    (CropInfo or None), ``affine`` (model-frame affine), ``placement`` (model-frame mm to the viewer,
    :mod:`napari_lsdebm._ui.placement`; None: at the origin) and, when :func:`preload_result` ran, ``volumes``.
    With ``render="mesh"`` in 3D the trajectory layer is added hidden (its mesh draws it, :data:`OPENS_AT_KEY`),
    so napari does not decode the frame at its own first slider position on this thread.
    """
    ckpt, traj = ctx["ckpt"], output.trajectory
    m = ckpt.config.model
    follow_display(viewer)
    centre = frame_centre(m.grid, m.spacing, output.mask)  # kept on the input in 2D
    where = placed_layer(ctx.get("placement"), 3, centre)
    common = {"scale": (m.spacing,) * 3, **{k: v for k, v in where.items() if k != "metadata"}}
    meta = {"affine": np.asarray(ctx.get("affine", np.diag([m.spacing] * 3 + [1.0]))), **where.get("metadata", {})}
    method = KIND_NAMES[ckpt.kind]
    for other in viewer.layers:
        other.visible = False  # the decoded trajectory is what the canvas shows; toggle the rest back on
    viewer.add_labels(output.mask.astype(np.uint8), name=f"{method} reconstruction", visible=False,
                      metadata={**meta, **role_metadata(RESULT)}, **common)
    if ctx.get("crop") is not None:
        data, kwargs = pasted_layer(output, ctx["crop"], ctx["source"], ckpt.model, ctx.get("pasted"))
        kwargs["metadata"] = {**kwargs["metadata"], **role_metadata(RESULT)}  # not the source's "input" role
        viewer.add_labels(data, name=f"{method} reconstruction ({kwargs.pop('grid')})", visible=False, **kwargs)
    volumes = ctx.get("volumes")
    if volumes is None or volumes.traj is not traj:
        volumes = result_volumes(ckpt, traj, cache)
    data, kwargs, _ = trajectory_layer_data(volumes, m.spacing, f"{method} trajectory")
    placed5 = placed_layer(ctx.get("placement"), 5, centre)
    kwargs["metadata"] = {**kwargs["metadata"], **placed5.pop("metadata", {})}
    kwargs.update(placed5)
    if ndisplay == 3 and render == "mesh":
        kwargs["visible"], kwargs["metadata"][OPENS_AT_KEY] = False, final_position(traj)
    layer = viewer.add_image(data, **kwargs)
    viewer.dims.ndisplay = ndisplay
    axes = slider_axes(viewer, layer)
    step = list(viewer.dims.current_step)  # both sliders in one move: no frame is asked for at (last t, old k)
    step[axes[0]], step[axes[1]] = final_position(traj)
    viewer.dims.current_step = tuple(step)
    fit_view(viewer, [layer])  # the structure, not the whole (hidden) spine it was cropped from
    if ndisplay == 3:
        aim_camera(camera_of(viewer), ctx.get("placement"))
    return layer
