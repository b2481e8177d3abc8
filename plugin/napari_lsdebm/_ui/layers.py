"""Convert between lsdebm volumes and napari layer data tuples."""

from __future__ import annotations

import numpy as np

from lsdebm.data.nifti import affine_spacing


def volume_layer(data: np.ndarray, affine: np.ndarray, name: str, source: str | None = None) -> tuple:
    """A napari LayerDataTuple: Labels for integer masks/label maps, Image otherwise.

    The layer's ``scale`` is the voxel spacing from the affine and its metadata carries the
    affine (and the source path) so writers can save with the original geometry.
    """
    metadata = {"affine": np.asarray(affine, dtype=float), "source": source}
    kwargs = {"name": name, "scale": affine_spacing(affine), "metadata": metadata}
    if data.dtype.kind in "biu":
        return (np.asarray(data).astype(np.int32 if data.dtype.kind == "b" else data.dtype), kwargs, "labels")
    return (data, kwargs, "image")
