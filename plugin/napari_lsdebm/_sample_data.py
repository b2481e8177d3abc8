"""Sample data contribution: a phantom vertebra pair."""

from __future__ import annotations

import numpy as np

from lsdebm.data.phantoms import make_vertebra
from lsdebm.data.thickslice import ThickSliceParams, simulate_thick_slice
from napari_lsdebm._layers import volume_layer


def phantom_pair():
    """L3 phantom (seed 0, 64³ at 2 mm): HQ mask, simulated thick-slice LQ mask, parts."""
    phantom = make_vertebra("L3", seed=0, size=64, spacing=2.0)
    lq = simulate_thick_slice(phantom.mask, 2.0, ThickSliceParams(), np.random.default_rng(0))
    layers = [
        volume_layer(phantom.mask, phantom.affine, "HQ (L3)"),
        volume_layer(lq, phantom.affine, "LQ thick-slice (L3)"),
        volume_layer(phantom.parts, phantom.affine, "parts (L3)"),
    ]
    layers[1][1]["visible"] = False
    layers[2][1]["visible"] = False
    return layers
