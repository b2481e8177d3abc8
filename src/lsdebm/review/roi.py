"""Metrics of a prediction against a reference inside regions: whole volume, parts, a user ROI.

A *region* is either a box (a tuple of slices, one per axis) or a boolean mask of the volume's
shape. Inside a box the metrics are exactly those of the cropped volumes. Inside a mask the
overlap metrics (DSC, VS, SEN, SPEC, NMI, CK; the paper's eqs. 18-23) count only the voxels of
the mask, and the surface distances (HD95, ASSD in mm) are those of the prediction and reference
restricted to the mask; a box given as a mask therefore gives the same numbers as the box.

Anatomical parts: a part label map of the reference (phantoms carry one, see
:data:`lsdebm.data.phantoms.PART_LABELS`) is extended to the whole grid by nearest labelled
voxel (a Voronoi partition in mm), so every prediction voxel -- false positives included --
belongs to the part it is closest to, and the per-part confusion counts add up to the whole.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsdebm.data.validate import check_mask
from lsdebm.errors import InputError
from lsdebm.evaluation.metrics import METRIC_NAMES, compute_metrics
from lsdebm.evaluation.parts import part_regions

OVERLAP_KEYS = ("dsc", "vs", "sen", "spec", "nmi", "ck")
DISTANCE_KEYS = ("hd95", "assd")


@dataclass(frozen=True)
class MetricsRow:
    """One row of the review table: a region name, its size in voxels and the metrics dict."""

    region: str
    voxels: int
    metrics: dict


def box_from_points(points, shape) -> tuple[slice, ...]:
    """The voxel box spanned by ROI corner points given in voxel (array index) coordinates.

    Voxels whose centres lie inside the points' bounding box are included. An axis along which
    all points share one coordinate (a rectangle drawn on one slice of a 3D volume) spans the
    whole axis, so a rectangle selects a prism through the volume; draw rectangles on two
    different slices to limit the depth.

    Raises:
        InputError: If the points are not (N, ndim) or the box misses the volume.
    """
    points = np.asarray(points, dtype=float)
    shape = tuple(int(n) for n in shape)
    if points.ndim != 2 or points.shape[1] != len(shape) or len(points) == 0:
        raise InputError(f"ROI points must be an (N, {len(shape)}) array; got shape {points.shape}")
    lo, hi = points.min(0), points.max(0)
    box = []
    for axis, (a, b, n) in enumerate(zip(lo, hi, shape)):
        if b - a < 1e-6:
            start, stop = 0, n
        else:
            start, stop = int(np.ceil(a - 1e-6)), int(np.floor(b + 1e-6)) + 1
        start, stop = max(start, 0), min(stop, n)
        if stop <= start:
            raise InputError(f"the ROI box lies outside the volume along axis {axis} "
                             f"({a:.1f}..{b:.1f}, volume 0..{n - 1})")
        box.append(slice(start, stop))
    return tuple(box)


def box_mask(box: tuple[slice, ...], shape) -> np.ndarray:
    """Boolean mask of ``shape`` that is True inside ``box``."""
    mask = np.zeros(tuple(shape), bool)
    mask[box] = True
    return mask


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    return tuple(slice(int(a), int(b) + 1) for a, b in zip(idx.min(0), idx.max(0)))


def _checked_pair(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    """Foreground of the prediction and reference (nonzero; label maps of several labels are whole structures),
    checked as :func:`lsdebm.evaluation.metrics.compute_metrics` checks them."""
    pred, ref = check_mask(pred, "prediction"), check_mask(ref, "reference")
    if pred.shape != ref.shape:
        raise InputError(f"prediction and reference shapes differ: {pred.shape} vs {ref.shape}")
    return pred, ref


def _checked_parts(parts, shape: tuple) -> np.ndarray:
    """A part label map of ``shape`` whose labels are whole non-negative numbers (NaN failed as a bare ValueError;
    a fractional label named a part no voxel of the partition holds)."""
    check_mask(parts, "part label map")  # non-real, NaN/inf and negative values
    parts = np.asarray(parts)
    if parts.dtype.kind == "f" and not np.array_equal(parts, np.round(parts)):
        raise InputError("part label map has fractional values; expected whole-number part labels (0 = background)")
    if parts.shape != tuple(shape):
        raise InputError(f"part label map shape {parts.shape} differs from the volume shape {tuple(shape)}")
    return parts


def region_metrics(pred, ref, spacing, region, reference_compat: bool = False) -> dict:
    """Metrics of ``pred`` against ``ref`` inside ``region`` (a box of slices or a boolean mask).

    Args:
        pred: Predicted mask (nonzero = foreground).
        ref: Reference mask of the same shape.
        spacing: Voxel spacing in mm per axis (or one number).
        region: ``None`` (whole volume), a tuple of slices, or a boolean mask of the same shape.
        reference_compat: Passed to :func:`lsdebm.evaluation.metrics.compute_metrics`.

    Returns:
        Dict keyed by :data:`lsdebm.evaluation.metrics.METRIC_NAMES`.

    Raises:
        InputError: If shapes differ, the region is empty, or a mask is refused by
            :func:`lsdebm.data.validate.check_mask` (NaN/inf, negative or non-real values).
    """
    pred, ref = _checked_pair(pred, ref)
    if region is None:
        return compute_metrics(pred, ref, spacing, reference_compat)
    if isinstance(region, tuple) and all(isinstance(s, slice) for s in region):
        if pred[region].size == 0:
            raise InputError("the ROI box is empty")
        return compute_metrics(pred[region], ref[region], spacing, reference_compat)
    region = check_mask(region, "ROI mask")
    if region.shape != pred.shape:
        raise InputError(f"ROI mask shape {region.shape} differs from the volume shape {pred.shape}")
    if not region.any():
        raise InputError("the ROI mask is empty; paint at least one voxel")
    overlap = compute_metrics(pred[region], ref[region], 1.0, reference_compat)
    box = _bbox(region)
    inside = region[box]
    distance = compute_metrics(pred[box] & inside, ref[box] & inside, spacing, reference_compat)
    return {k: (overlap[k] if k in OVERLAP_KEYS else distance[k]) for k in METRIC_NAMES}


def reviewed_pair(pred, ref, label: int | None = None, pred_name: str = "the prediction",
                  ref_name: str = "the reference") -> tuple[np.ndarray, np.ndarray]:
    """The (prediction, reference) masks the review scores: of one structure when ``label`` is given.

    With a label, the reference is its voxels of that label (a VerSe or TotalSegmentator spine as
    ground truth), and so is the prediction when it is a label map holding the label; a prediction of
    one structure (a reconstruction) is used whole. Without a label both are used whole (a refined
    spine against its ground-truth spine), except one structure against a map of several, which is
    refused, naming the map's labels. Images are thresholded at 0.5.

    Raises:
        InputError: The reference lacks the label, or one structure meets a map of several without a label.
    """
    from lsdebm.data.label_census import present_labels
    from lsdebm.data.validate import several_labels

    def whole(d):
        return d >= 0.5 if d.dtype.kind == "f" else d != 0

    pred, ref = np.asarray(pred), np.asarray(ref)
    if label is None:
        masks = whole(pred), whole(ref)
        present = [present_labels(d) if d.dtype.kind in "biu" and m.any() else [] for d, m in zip((pred, ref), masks)]
        if (len(present[0]) > 1) != (len(present[1]) > 1):  # one structure against a map of several
            i = 0 if len(present[0]) > 1 else 1
            raise several_labels((pred_name, ref_name)[i], present[i], "review")
        return masks
    ref_one = ref == label if ref.dtype.kind in "biu" else None
    if ref_one is None or not ref_one.any():
        listed = [int(v) for v in np.unique(ref) if v != 0][:20]
        raise InputError(f"{ref_name} has no label {label}; labels present: {listed or 'none'}")
    pred_one = pred == label if pred.dtype.kind in "biu" else None
    return (pred_one if pred_one is not None and pred_one.any() else whole(pred)), ref_one


def review_metrics(pred, ref, spacing, parts=None, part_names: dict | None = None, roi=None,
                   roi_name: str = "ROI", reference_compat: bool = False) -> list[MetricsRow]:
    """The review table: whole volume, one row per anatomical part (if ``parts``), the ROI (if ``roi``).

    Args:
        pred, ref: Prediction and reference masks (nonzero = foreground; finite, non-negative values).
        spacing: Voxel spacing in mm.
        parts: Optional part label map of the reference (0 = background; whole non-negative labels).
        part_names: Label -> name (default :data:`lsdebm.data.phantoms.PART_LABELS`; unknown
            labels are called ``part N``).
        roi: Optional region (box of slices or boolean mask).
        roi_name: Name of the ROI row.
        reference_compat: Passed to :func:`lsdebm.evaluation.metrics.compute_metrics`.

    Raises:
        InputError: For masks or a region :func:`region_metrics` refuses, or a part label map of another shape or
            with NaN, negative or fractional labels.
    """
    pred, ref = _checked_pair(pred, ref)
    rows = [MetricsRow("whole volume", int(pred.size), region_metrics(pred, ref, spacing, None, reference_compat))]
    if parts is not None:
        if part_names is None:
            from lsdebm.data.phantoms import PART_LABELS as part_names
        parts = _checked_parts(parts, pred.shape)
        regions = part_regions(parts, spacing)
        for label in (int(v) for v in np.unique(parts) if v != 0):
            region = regions == label
            rows.append(MetricsRow(part_names.get(label, f"part {label}"), int(region.sum()),
                                   region_metrics(pred, ref, spacing, region, reference_compat)))
    if roi is not None:
        size = int(pred[roi].size) if isinstance(roi, tuple) else int(np.count_nonzero(roi))
        rows.append(MetricsRow(roi_name, size, region_metrics(pred, ref, spacing, roi, reference_compat)))
    return rows
