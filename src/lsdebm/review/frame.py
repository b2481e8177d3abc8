"""Moving a volume between its own grid and the model grid (crop around the centroid, paste back).

A volume already on the model grid (same shape) is used as is; any other grid is cropped
around the foreground centroid into the model frame (:func:`lsdebm.data.nifti.crop_label`), and
results go back with :func:`lsdebm.data.nifti.paste_back` (masks) or linear resampling
(probability / variance maps).
"""
from __future__ import annotations

import numpy as np

from lsdebm.data.nifti import CropInfo, _resample, paste_back
from lsdebm.tasks.reconstruct import crop_to_model


def to_model_grid(x, affine, grid: int, spacing: float, model_cfg=None) -> tuple[np.ndarray, CropInfo | None]:
    """``(crop, info)``: the uint8 mask on the model grid and how to go back (None: already on it)."""
    x = np.asarray(x)
    if x.shape == (grid,) * x.ndim:
        return (x != 0).astype(np.uint8), None
    return crop_to_model(x, affine, None, grid, spacing, model_cfg)  # the checkpoint's frame


def mask_to_input(mask, info: CropInfo | None) -> np.ndarray:
    """A model-grid mask (or probability, thresholded at 0.5) on the input grid, uint8 {0, 1}."""
    mask = np.asarray(mask)
    if info is None:
        return (mask >= 0.5).astype(np.uint8) if mask.dtype.kind == "f" else (mask != 0).astype(np.uint8)
    return paste_back(mask, info)


def volume_to_input(volume, info: CropInfo | None) -> np.ndarray:
    """A model-grid float volume (probability, variance) resampled linearly onto the input grid."""
    volume = np.asarray(volume, np.float32)
    if info is None:
        return volume
    return _resample(volume, info.source_shape, info.source_affine, info.crop_affine, 1).astype(np.float32)
