"""Convert between lsdebm volumes and napari layer data tuples."""

from __future__ import annotations

import numpy as np

from lsdebm.data.nifti import affine_spacing


def volume_layer(data: np.ndarray, affine: np.ndarray, name: str, source: str | None = None) -> tuple:
    """A napari LayerDataTuple: Labels for integer masks/label maps, Image otherwise.

    The layer's ``scale`` is the voxel spacing from the affine and its metadata carries the
    affine (and the source path) so writers can save with the original geometry. Its ``translate``
    places it where the affine puts it, along its own axes (:func:`display_translate`): files of
    one scan (several vertebrae, a crop and its whole) line up in the viewer as in the scanner.
    """
    metadata = {"affine": np.asarray(affine, dtype=float), "source": source}
    kwargs = {"name": name, "scale": affine_spacing(affine), "translate": display_translate(affine),
              "metadata": metadata}
    if data.dtype.kind in "biu":
        return (np.asarray(data).astype(np.int32 if data.dtype.kind == "b" else data.dtype), kwargs, "labels")
    return (data, kwargs, "image")


def display_translate(affine: np.ndarray) -> tuple[float, float, float]:
    """The napari ``translate`` that, with the voxel spacing as ``scale``, shows a volume at its world position
    seen along its own axes: the affine is ``D S`` (directions ``D``, unit columns; spacing ``S``) plus origin
    ``o``, so world = D (S index + D^-1 o) and the layer shows ``D^-1 world``. Volumes with the same directions
    (one scan, its crops, its resampled copies) are shown in the same frame, in their true relative positions;
    for the usual RAS-aligned affine that frame is the scanner's. A singular affine gives no translate."""
    affine = np.asarray(affine, dtype=float)
    linear = affine[:3, :3]
    norms = np.linalg.norm(linear, axis=0)
    if not np.all(np.isfinite(affine)) or np.any(norms == 0) or abs(np.linalg.det(linear)) < 1e-12:
        return (0.0, 0.0, 0.0)
    return tuple(float(v) for v in np.linalg.solve(linear / norms, affine[:3, 3]))
