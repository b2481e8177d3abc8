"""Where the model frame lies in the viewer: on the input layer, as the crop took it from there.

A run's model-frame layers (the reconstruction, the trajectory and its mesh, the live preview) hold
the vertebra in its own upright 64³ frame; the crop's affine says where that frame lies in the
world, and the input layer's affine (metadata) and display transform say where the world is drawn.
Their composition, a 4x4 *placement* from model-frame millimetres (voxel index x spacing) to the
viewer's coordinates, puts those layers on the input: toggling the input on shows both in one place.
With pose normalisation the placement turns the frame (the vertebra's tilt, and the input's axis
order), which napari draws in 3D but cannot slice in 2D (a turned layer's slices come out empty): in
2D those layers are only moved, the model frame's centre onto the same point of the input, upright
as the model sees the vertebra (:func:`follow_display` switches them with napari's 2D/3D button).
"""
from __future__ import annotations

import weakref

import numpy as np

from napari_lsdebm._ui.pickers import affine_of, display_matrix

CAMERA_ANGLES = (-15.0, 35.0, 60.0)  # napari Euler angles (degrees) in the model frame: from behind and above


def frame_centre(grid: int, spacing: float, mask=None) -> tuple[float, float, float]:
    """The point kept in place in 2D, in the model frame's mm (voxel index x spacing): the centroid of
    ``mask`` (the reconstruction) when it has one, else the frame's centre. The vertebra sits off the frame's
    centre (the pose puts its body there), so its centroid is what should stay on the input."""
    if mask is not None and np.any(mask):
        return tuple(float(v) * float(spacing) for v in np.argwhere(np.asarray(mask) > 0).mean(axis=0))
    return ((grid - 1) / 2 * float(spacing),) * 3


def model_placement(source, model_affine, spacing: float) -> np.ndarray:
    """4x4 from model-frame mm to the viewer, for a run on ``source`` (the input layer) whose model frame
    has ``model_affine`` (voxel index to world; the crop's affine, or the input's own when it needed none)."""
    to_index = np.diag([1.0 / float(spacing)] * 3 + [1.0])
    return display_matrix(source) @ np.linalg.inv(affine_of(source)) @ np.asarray(model_affine, float) @ to_index


PLACEMENT_KEY = "lsdebm_placement"  # layer metadata: the 3D placement and the model frame's centre (mm)
_FOLLOWED: weakref.WeakSet = weakref.WeakSet()  # viewers whose 2D/3D switch re-places their layers


def placed(placement, ndim: int = 3, ndisplay: int = 3, centre=None) -> dict:
    """Layer kwargs that draw model-frame mm (times the layer's own scale) at ``placement``: napari's
    ``affine`` for the last three of ``ndim`` dims, no translate. For 2D (``ndisplay`` 2) only the
    placement's shift of ``centre`` (model-frame mm; default the placement's own origin). None: where
    napari puts it by itself."""
    if placement is None:
        return {}
    placement = np.asarray(placement, float)
    if ndisplay == 2:
        centre = np.zeros(3) if centre is None else np.asarray(centre, float)
        moved = np.eye(4)
        moved[:3, 3] = placement[:3, :3] @ centre + placement[:3, 3] - centre
        placement = moved
    out = np.eye(ndim + 1)
    out[ndim - 3:ndim, ndim - 3:ndim] = placement[:3, :3]
    out[ndim - 3:ndim, ndim] = placement[:3, 3]
    return {"affine": out, "translate": (0.0,) * ndim}


def _record(placement, centre) -> dict:
    """What a placed layer keeps in its metadata (:data:`PLACEMENT_KEY`)."""
    return {"placement": np.asarray(placement, float).tolist(), "centre": [float(v) for v in centre]}


def placed_layer(placement, ndim: int, centre) -> dict:
    """Layer kwargs of a placed layer: :func:`placed` as for 2D, plus the metadata :func:`follow_display`
    reads (``metadata`` to merge into the layer's), which turns it once it is in a 3D viewer. (napari
    slices a new layer in 2D while building it, and a turned one would warn of non-orthogonal slicing.)"""
    if placement is None:
        return {}
    return {**placed(placement, ndim, 2, centre), "metadata": {PLACEMENT_KEY: _record(placement, centre)}}


def _apply(viewer, layer) -> None:
    """Draw a placed layer as ``viewer``'s current 2D or 3D display needs (other layers are left alone)."""
    record = layer.metadata.get(PLACEMENT_KEY)
    if record:
        kwargs = placed(record["placement"], layer.ndim, viewer.dims.ndisplay, record["centre"])
        layer.affine, layer.translate = kwargs["affine"], kwargs["translate"]


def place(viewer, layers, placement, centre) -> None:
    """Place layers already in ``viewer`` (a reopened run) at ``placement``, and keep them placed."""
    follow_display(viewer)
    for layer in layers:
        layer.metadata[PLACEMENT_KEY] = _record(placement, centre)
        _apply(viewer, layer)


def follow_display(viewer) -> None:
    """Place every placed layer of ``viewer`` for its 2D or 3D display, as it is added and whenever napari
    switches between them (connect once per viewer)."""
    if viewer in _FOLLOWED:
        return
    _FOLLOWED.add(viewer)
    # napari runs its own callbacks first, so the switch to 2D slices a turned layer once (it warns once)
    viewer.dims.events.ndisplay.connect(lambda event=None: [_apply(viewer, layer) for layer in list(viewer.layers)])
    viewer.layers.events.inserted.connect(lambda event: _apply(viewer, event.value))


def placement_of(layer):
    """``(placement, centre)`` a layer was given (3D; None, None when it has none), for the layers that
    follow it (the trajectory's mesh)."""
    record = layer.metadata.get(PLACEMENT_KEY)
    return (np.asarray(record["placement"], float), record["centre"]) if record else (None, None)


def aim_camera(camera, placement) -> None:
    """Look at the model frame from :data:`CAMERA_ANGLES` (behind and above the vertebra) wherever the
    placement turned it: the model frame's view and up directions, turned with it."""
    camera.angles = CAMERA_ANGLES
    if placement is None:
        return
    turn = np.asarray(placement, float)[:3, :3]
    view, up = turn @ np.asarray(camera.view_direction), turn @ np.asarray(camera.up_direction)
    up = up - view * (up @ view) / (view @ view)  # square again after any shear or reflection
    camera.set_view_direction(tuple(view / np.linalg.norm(view)), tuple(up / np.linalg.norm(up)))
