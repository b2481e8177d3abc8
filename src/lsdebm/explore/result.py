"""The explorer's result on the input's grid: the same output step as ``lsdebm reconstruct``.

A run's mean probabilities (model grid) are pasted onto the input grid (or an isotropic output
grid) and, when the input's thick-slice acquisition is known, pass through the checkpoint's
measurement-aware step (:func:`lsdebm.data.slab_projection.measured_output`), so the explorer's
"reconstruction (input grid)" layer is what the command line would write for that chain.
"""
from __future__ import annotations

import numpy as np

from lsdebm.data.acquisition import observed_acquisition
from lsdebm.data.frame import CropInfo, paste_back, paste_probabilities
from lsdebm.data.grids import output_grid
from lsdebm.data.slab_projection import measured_output
from lsdebm.data.validate import foreground
from lsdebm.errors import InputError
from lsdebm.runtime.loading import bundled_slab, output_step


def result_on_grid(probs: np.ndarray, crop: CropInfo, source_data, model, out_shape=None,
                   out_affine=None) -> np.ndarray:
    """uint8 mask of ``probs`` on the output grid (default: the input's), measurement-aware when possible."""
    observed = foreground(np.asarray(source_data), crop.label)
    acq = observed_acquisition(observed, crop.source_affine)
    ccfg, interpolator = output_step(model, bundled_slab())
    pasted, _ = measured_output(probs, crop, observed, crop.source_affine, acq, ccfg, out_shape, out_affine,
                                interpolator)
    return pasted.mask()


def result_layer_data(output, crop: CropInfo, source_data=None, model=None) -> tuple[np.ndarray, tuple | None]:
    """``(mask, grid)``: a run's result pasted out of the model grid, ready for a layer.

    ``grid`` is the isotropic output grid ``(shape, affine)`` of an anisotropic input, or None for
    the input's own grid (also when that grid would be too large). With the run's ``model`` the
    mean probabilities go through :func:`result_on_grid`; without it they are only pasted. It does
    the heavy work of showing a result, so the explorer calls it in the run's worker thread.
    """
    try:
        grid = output_grid(crop.source_shape, crop.source_affine)
    except InputError:
        grid = None
    probs = output.probs.mean(0)
    if model is not None:
        return result_on_grid(probs, crop, source_data, model, *(grid or (None, None))), grid
    if grid is None:
        return paste_back(output.mask, crop), None
    return (paste_probabilities(probs, crop, *grid) >= 0.5).astype(np.uint8), grid
