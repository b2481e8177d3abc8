"""Sample data contribution for teaching: 100 real digits (10 per class) from scikit-learn."""
from __future__ import annotations

import numpy as np

from lsdebm.data.digits import digit_mosaic, load_digits


def teach_digits():
    """A 10 x 10 grid of held-out 16x16 digits, row r holding the digit r (values in [0, 1])."""
    data = load_digits(16, "test")
    picks = np.concatenate([np.flatnonzero(data.labels == d)[:10] for d in range(10)])
    mosaic = digit_mosaic(data.images[picks], cols=10, gap=1, fill=0.25)
    return [(mosaic, {"name": "digits 16x16 (scikit-learn, held-out)", "colormap": "gray",
                      "contrast_limits": (0.0, 1.0)}, "image")]
