"""Sample data contributions: a phantom vertebra pair, a real (VerSe) vertebra pair and teaching digits."""

from __future__ import annotations

import numpy as np

from lsdebm.data.digits import digit_mosaic, load_digits
from lsdebm.data.samples import REAL_ATTRIBUTION, phantom_sample, real_sample
from napari_lsdebm._ui.layers import volume_layer
from napari_lsdebm._ui.roles import INPUT, TRUTH, tag_tuple


def phantom_pair():
    """L3 phantom (seed 0, 64³ at 2 mm): HQ mask (role truth), simulated thick-slice LQ mask (role input), parts."""
    pair, phantom = phantom_sample("L3", seed=0, size=64, spacing=2.0)
    layers = [
        tag_tuple(volume_layer(pair.truth, pair.affine, "HQ (L3)"), TRUTH),
        tag_tuple(volume_layer(pair.lq, pair.affine, "LQ thick-slice (L3)"), INPUT),
        volume_layer(phantom.parts, pair.affine, "parts (L3)"),
    ]
    layers[1][1]["visible"] = False
    layers[2][1]["visible"] = False
    return layers


def _attributed(layer: tuple, role: str) -> tuple:
    layer[1]["metadata"].update(attribution=REAL_ATTRIBUTION)
    return tag_tuple(layer, role)


def real_pair():
    """A real lumbar vertebra (VerSe L3 of verse009, validation split) at 1 mm and its thick-slice version.

    The ground truth is resampled to 1 mm isotropic and degraded with 5 mm sagittal slabs
    (no gap, in-plane blur 0.7 mm, noise 0.2, seed 0; :func:`lsdebm.data.samples.real_sample`).
    Returns the degraded input (visible) and the ground truth (hidden); both carry the data's
    attribution in their names and in ``metadata['attribution']``, and their role in ``metadata['role']``.
    """
    pair = real_sample("L3", seed=0)
    source = str(pair.path)
    layers = [
        _attributed(volume_layer(pair.lq, pair.affine, "LQ 5 mm sagittal (L3, VerSe 2019, CC BY-SA 4.0)", source),
                    INPUT),
        _attributed(volume_layer(pair.truth, pair.affine, "GT (L3, VerSe 2019, CC BY-SA 4.0)", source), TRUTH),
    ]
    layers[1][1]["visible"] = False
    _announce(f"Real sample {pair.name}: {REAL_ATTRIBUTION}")
    return layers


def _announce(message: str) -> None:
    try:
        from napari.utils.notifications import show_info
    except ImportError:  # napari-free use of the sample function
        return
    show_info(message)


def teach_digits():
    """A 10 x 10 grid of held-out 16x16 digits, row r holding the digit r (values in [0, 1])."""
    data = load_digits(16, "test")
    picks = np.concatenate([np.flatnonzero(data.labels == d)[:10] for d in range(10)])
    mosaic = digit_mosaic(data.images[picks], cols=10, gap=1, fill=0.25)
    return [(mosaic, {"name": "digits 16x16 (scikit-learn, held-out)", "colormap": "gray",
                      "contrast_limits": (0.0, 1.0)}, "image")]
