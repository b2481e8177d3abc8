"""True positive / false positive / false negative label map of a prediction against a reference.

The overlap map is what the paper's qualitative figures (Figs. 3, 4, 10-13) show in colour: every
voxel is one of :data:`OVERLAP_CLASSES`. Colours are from the Okabe-Ito palette so that the three
classes stay distinguishable with red-green colour-vision deficiency.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsdebm.data.validate import check_mask
from lsdebm.errors import InputError

TN, TP, FP, FN = 0, 1, 2, 3
OVERLAP_CLASSES = {TN: "TN", TP: "TP", FP: "FP", FN: "FN"}
OVERLAP_DESCRIPTIONS = {
    TN: "true negative (background in both)",
    TP: "true positive (in prediction and reference)",
    FP: "false positive (prediction only)",
    FN: "false negative (reference only, missed)",
}
# RGBA in [0, 1]; background fully transparent.
OVERLAP_COLORS = {
    TN: (0.0, 0.0, 0.0, 0.0),
    TP: (0.0, 0.620, 0.451, 1.0),  # Okabe-Ito bluish green #009E73
    FP: (0.835, 0.369, 0.0, 1.0),  # Okabe-Ito vermillion #D55E00
    FN: (0.0, 0.447, 0.698, 1.0),  # Okabe-Ito blue #0072B2
}


@dataclass(frozen=True)
class Overlap:
    """An overlap label map and its voxel counts.

    Attributes:
        labels: uint8 map with values TN=0, TP=1, FP=2, FN=3 (shape of the inputs).
        counts: Voxels per class name, ``{"TN": .., "TP": .., "FP": .., "FN": ..}``.
    """

    labels: np.ndarray
    counts: dict

    def legend(self) -> list[tuple[str, str, tuple, int]]:
        """Rows ``(class, description, rgba, voxels)`` for TP, FP, FN (what a legend shows)."""
        return [(OVERLAP_CLASSES[v], OVERLAP_DESCRIPTIONS[v], OVERLAP_COLORS[v], self.counts[OVERLAP_CLASSES[v]])
                for v in (TP, FP, FN)]


def overlap_map(pred, ref) -> Overlap:
    """Classify every voxel of ``pred`` (nonzero = foreground) against the reference ``ref``.

    Masks and label maps (several positive labels) are accepted as :func:`lsdebm.evaluation.metrics.compute_metrics`
    accepts them (:func:`lsdebm.data.validate.check_mask`).

    Raises:
        InputError: If the shapes differ or a mask is not boolean/integer/real, holds NaN/inf or negative values.
    """
    pred, ref = check_mask(pred, "prediction"), check_mask(ref, "reference")
    if pred.shape != ref.shape:
        raise InputError(f"prediction and reference shapes differ: {pred.shape} vs {ref.shape}")
    labels = np.zeros(pred.shape, np.uint8)
    labels[pred & ref] = TP
    labels[pred & ~ref] = FP
    labels[~pred & ref] = FN
    counts = np.bincount(labels.ravel(), minlength=4)
    return Overlap(labels, {OVERLAP_CLASSES[v]: int(counts[v]) for v in OVERLAP_CLASSES})


def hex_color(rgba) -> str:
    """``#rrggbb`` of an RGBA tuple in [0, 1] (for legends in widgets and documents)."""
    return "#" + "".join(f"{int(round(c * 255)):02x}" for c in rgba[:3])
