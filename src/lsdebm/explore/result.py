"""The explorer's result on the input's grid: the same output step as ``lsdebm reconstruct``.

A run's mean probabilities (model grid) are pasted onto the input grid (or an isotropic output
grid) and, when the input's thick-slice acquisition is known, pass through the checkpoint's
measurement-aware step (:func:`lsdebm.data.slab_projection.measured_output`), so the explorer's
"reconstruction (input grid)" layer is what the command line would write for that chain.
"""
from __future__ import annotations

import numpy as np

from lsdebm.data.acquisition import find_acquisition
from lsdebm.data.frame import CropInfo
from lsdebm.data.slab_projection import measured_output
from lsdebm.data.validate import foreground
from lsdebm.methods import RunSettings, consistency_config


def result_on_grid(probs: np.ndarray, crop: CropInfo, source_data, model, out_shape=None,
                   out_affine=None) -> np.ndarray:
    """uint8 mask of ``probs`` on the output grid (default: the input's), measurement-aware when possible."""
    observed = foreground(np.asarray(source_data), crop.label)
    acq = find_acquisition(observed, crop.source_affine)
    ccfg = consistency_config(model, RunSettings())
    pasted, _ = measured_output(probs, crop, observed, crop.source_affine, acq, ccfg, out_shape, out_affine)
    return (pasted >= 0.5).astype(np.uint8)
