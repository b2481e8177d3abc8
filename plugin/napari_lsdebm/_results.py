"""Layers of a finished run: the reconstruction (Labels) and the (t, k) trajectory (Image).

Model-frame layers carry the model spacing as scale and the crop's (or source's) affine in their
metadata, which the NIfTI writer uses. When the input had to be cropped, the reconstruction is
also pasted back into the input layer's grid.
"""
from __future__ import annotations

import numpy as np

from lsdebm.data.nifti import paste_back
from lsdebm.explore import RunOutput, TrajectoryVolumes, make_decoder
from lsdebm.sampling import DecodeCache
from napari_lsdebm._checkpoint_panel import KIND_NAMES
from napari_lsdebm._trajectory_layer import slider_axes, trajectory_layer_data

CAMERA_ANGLES = (-15.0, 35.0, 60.0)  # napari Euler angles (degrees): oblique view from behind and above


def add_result_layers(viewer, output: RunOutput, ctx: dict, cache: DecodeCache, ndisplay: int = 3):
    """Add the result layers of ``output`` and show its final frame; returns the trajectory layer.

    ``ctx`` holds ``ckpt`` (the LoadedCheckpoint that ran), ``source`` (input layer), ``crop``
    (CropInfo or None), ``affine`` (model-frame affine) and ``translate`` (model-frame offset).
    """
    ckpt, traj = ctx["ckpt"], output.trajectory
    m = ckpt.config.model
    common = {"scale": (m.spacing,) * 3, "translate": tuple(ctx.get("translate", (0, 0, 0)))}
    meta = {"affine": np.asarray(ctx.get("affine", np.diag([m.spacing] * 3 + [1.0])))}
    method = KIND_NAMES[ckpt.kind]
    for other in viewer.layers:
        other.visible = False  # the decoded trajectory is what the canvas shows; toggle the rest back on
    viewer.add_labels(output.mask.astype(np.uint8), name=f"{method} reconstruction", visible=False,
                      metadata=meta, **common)
    if ctx.get("crop") is not None:
        src = ctx["source"]
        viewer.add_labels(paste_back(output.mask, ctx["crop"]), name=f"{method} reconstruction (input grid)",
                          scale=src.scale, translate=src.translate, metadata=dict(src.metadata), visible=False)
    volumes = TrajectoryVolumes(traj, make_decoder(ckpt.model), (m.grid,) * 3, cache=cache)
    data, kwargs, _ = trajectory_layer_data(volumes, m.spacing, f"{method} trajectory")
    kwargs["translate"] = (0, 0, *common["translate"])
    layer = viewer.add_image(data, **kwargs)
    viewer.dims.ndisplay = ndisplay
    axes = slider_axes(viewer, layer)
    viewer.dims.set_current_step(axes[0], traj.n_frames - 1)
    viewer.dims.set_current_step(axes[1], max(traj.n_k - 1, 0))
    viewer.reset_view()
    if ndisplay == 3:
        viewer.camera.angles = CAMERA_ANGLES
    return layer
