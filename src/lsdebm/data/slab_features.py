"""What the learned slab interpolation sees: an observed slab mask as four channels at 1 mm.

The slab model (:mod:`lsdebm.nn.slabnet`) refines the classical shape-based interpolation of a
thick-slice observation (:func:`lsdebm.data.slab_projection.interpolate_slabs`) at the input's
own in-plane resolution. Its input, on an isotropic grid of :data:`SLAB_SPACING_MM` whose axes
are parallel to the input's, with the slab axis moved first:

0. the observation, -1 (background) / +1 (foreground): each slab's central slice, repeated
   over the slab (so every slice shows its own slab, even where the observation was resampled
   twice and a slice near a slab edge took its neighbour's mask);
1. the classical interpolation's logit (minus the signed distance in mm), clipped to
   +-:data:`BASE_CLIP` and divided by :data:`BASE_SCALE`; the network's output is a residual
   added to it, so an untrained network reproduces the classical interpolation;
2. the position of each slice within its slab, from -0.5 (first slice) to +0.5 (last);
3. the slab thickness in cm (a constant map).

:func:`slab_box` picks the box the model looks at (the observed foreground plus a margin).
"""
from __future__ import annotations

import numpy as np

from lsdebm.data.acquisition import Acquisition
from lsdebm.data.frame import bounding_box
from lsdebm.data.slab_projection import central_slices, interpolate_slabs, slab_ids

SLAB_SPACING_MM = 1.0
BASE_CLIP = 8.0
BASE_SCALE = 4.0
CHANNELS = 4
BOX_MARGIN = 8


def slab_box(mask: np.ndarray, margin: int = BOX_MARGIN) -> tuple[slice, ...] | None:
    """Index box of ``mask``'s foreground grown by ``margin`` voxels (clipped to the array); None if empty."""
    return bounding_box(mask, margin)


def position_in_slab(ids: np.ndarray) -> np.ndarray:
    """Per slice, its position within its slab: -0.5 (first) ... +0.5 (last); 0 for one-slice slabs."""
    ids = np.asarray(ids)
    pos = np.zeros(len(ids), np.float32)
    for s in np.unique(ids):
        rows = np.flatnonzero(ids == s)
        pos[rows] = (rows - rows.mean()) / len(rows)
    return pos


def slab_features(observed: np.ndarray, acq: Acquisition, in_affine, grid_affine, axis: int) -> np.ndarray:
    """The model's input channels (see the module doc) for ``observed`` on a grid (``grid_affine``).

    Args:
        observed: The observation (nonzero = foreground) on the grid, e.g. resampled by nearest
            neighbour from the input.
        acq: The input's acquisition; ``in_affine`` the input grid's affine.
        grid_affine: Affine of ``observed``'s grid (isotropic, axes parallel to the input's).
        axis: The grid axis parallel to the slab axis.

    Returns:
        float32 array ``(CHANNELS, n_axis, ...)``: the slab axis first, the other two in order.
    """
    observed = np.asarray(observed) != 0
    ids = slab_ids(acq, in_affine, observed.shape, grid_affine, axis)
    spacing = np.linalg.norm(np.asarray(grid_affine, float)[:3, :3], axis=0)
    prob = np.clip(interpolate_slabs(observed, ids, axis, spacing), 1e-6, 1 - 1e-6)
    base = np.clip(np.log(prob) - np.log1p(-prob), -BASE_CLIP, BASE_CLIP) / BASE_SCALE
    obs = np.moveaxis(observed, axis, 0)[central_slices(ids)]
    out = np.empty((CHANNELS,) + obs.shape, np.float32)
    out[0] = np.where(obs, 1.0, -1.0)
    out[1] = np.moveaxis(base, axis, 0)
    out[2] = position_in_slab(ids)[:, None, None]
    out[3] = acq.thickness_mm / 10.0
    return out
