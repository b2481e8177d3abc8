"""Anatomical part regions: a part label map extended to the whole volume by nearest labelled voxel.

Used by the evaluation's part Dice (:mod:`lsdebm.evaluation.phantoms`) and the review table
(:mod:`lsdebm.review.roi`), so both partition a volume the same way.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from lsdebm.errors import InputError


def part_regions(parts, spacing=1.0, allow_empty: bool = False) -> np.ndarray:
    """Extend a part label map to every voxel by its nearest labelled voxel (a Voronoi partition in mm).

    Every voxel, background included, gets the label of the closest labelled voxel, so the regions
    tile the volume and per-part confusion counts add up to the whole-volume counts.

    Args:
        parts: Part label map (0 = background).
        spacing: Voxel size in mm, one number or one per axis.
        allow_empty: What a map without any labelled voxel gives: all zeros when True, else an error.

    Raises:
        InputError: If the map has no labelled voxel and ``allow_empty`` is False.
    """
    parts = np.asarray(parts)
    if not (parts != 0).any():
        if allow_empty:
            return np.zeros(parts.shape, np.uint8)
        raise InputError("the part label map has no labelled voxel")
    sampling = np.broadcast_to(np.asarray(spacing, float), (parts.ndim,))
    idx = ndimage.distance_transform_edt(parts == 0, sampling=sampling, return_distances=False,
                                         return_indices=True)
    return parts[tuple(idx)]
