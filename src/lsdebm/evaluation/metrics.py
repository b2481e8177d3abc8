"""Segmentation metrics of the paper's Appendix D, plus HD95 and ASSD in millimetres.

Overlap metrics are computed from confusion counts (numpy only): DSC (eq. 18), VS (eq. 19),
SPEC (eq. 20), SEN (eq. 21), NMI (eq. 22, arithmetic averaging of the entropies) and
Cohen's kappa (eq. 23). Surface distances use Euclidean distance transforms with the voxel
spacing.

Defined values for degenerate cases (never NaN):

* DSC, VS: 1.0 when both masks are empty.
* SEN: 1.0 when the reference has no foreground (nothing to miss); SPEC: 1.0 when the
  reference has no background.
* NMI: 1.0 when both masks are constant (one label each), 0.0 when only one is constant
  (as scikit-learn).
* CK: 1.0 when chance agreement is 1 (both masks constant and equal).
* HD95, ASSD: 0.0 when both masks are empty; the field-of-view diagonal in mm when exactly
  one is empty (the largest distance the grid can express).

ASSD comes in two definitions (``assd(..., method=...)``): ``"symmetric_mean"`` (the default,
used by every table) is the mean of the two one-way mean surface distances, as SimpleITK and
older medpy; ``"pooled"`` is the mean over all surface distances of both directions together,
as current medpy and MONAI. They differ when the two surfaces have different voxel counts.

Masks must be boolean, integer or real arrays with finite, non-negative values (nonzero =
foreground); spacing must be one positive finite number or one per axis. Anything else raises
:class:`lsdebm.errors.InputError`.

``reference_compat=True`` reproduces the columns of the authors' evaluation (see
docs/reference-code.md §6): "SEN" is precision TP/(TP+FP), "SPEC" is negative
predictive value TN/(TN+FN) (swapped arguments), both 0.0 on a zero denominator; NMI uses
geometric averaging (scikit-learn 0.21 default); DSC inverts both masks when the reference
is empty (as their script) and is 0.0 on a zero denominator.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from lsdebm.data.validate import check_mask
from lsdebm.errors import InputError

METRIC_NAMES = ("dsc", "vs", "sen", "spec", "nmi", "ck", "hd95", "assd")


class Confusion(NamedTuple):
    """Voxel confusion counts of a binary prediction against a reference."""

    tp: int
    fp: int
    fn: int
    tn: int


ASSD_METHODS = ("symmetric_mean", "pooled")
#: The largest voxel size :func:`check_spacing` takes (a kilometre): larger ones are units errors, and their squared
#: distances overflow.
MAX_SPACING_MM = 1e6


def check_spacing(spacing, ndim: int) -> tuple[float, ...]:
    """Return ``spacing`` as ``ndim`` floats in mm (one number applies to every axis).

    Raises:
        InputError: If it is not numeric, has a number of values other than 1 or ``ndim``, or
            any value is zero, negative, NaN, infinite or above :data:`MAX_SPACING_MM`.
    """
    try:
        values = np.asarray(spacing, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"spacing {spacing!r} is not numeric; expected {ndim} positive finite numbers "
                         "in mm") from None
    if values.ndim == 0:
        values = np.full(ndim, float(values))
    elif values.shape != (ndim,):
        raise InputError(f"spacing has {values.size} values {tuple(values.ravel().tolist())} for a "
                         f"{ndim}D mask; expected {ndim} positive finite numbers in mm (or one number)")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise InputError(f"spacing {tuple(values.tolist())} has zero, negative or non-finite values; "
                         f"expected {ndim} positive finite numbers in mm")
    if np.any(values > MAX_SPACING_MM):  # squared distances of such a grid overflow: HD95 and ASSD were NaN
        raise InputError(f"spacing {tuple(values.tolist())} mm is larger than {MAX_SPACING_MM:g} mm (a units "
                         f"error?); expected {ndim} positive voxel sizes in mm")
    return tuple(float(v) for v in values)


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = check_mask(pred, "prediction"), check_mask(gt, "reference")
    if pred.shape != gt.shape:
        raise InputError(f"prediction and reference shapes differ: {pred.shape} vs {gt.shape}")
    return pred, gt


def confusion(pred, gt) -> Confusion:
    """Count TP, FP, FN, TN of ``pred`` (nonzero = foreground) against ``gt``."""
    pred, gt = _pair(pred, gt)
    tp = int(np.count_nonzero(pred & gt))
    n_pred, n_gt = int(np.count_nonzero(pred)), int(np.count_nonzero(gt))
    fp, fn = n_pred - tp, n_gt - tp
    return Confusion(tp, fp, fn, pred.size - tp - fp - fn)


def _ratio(num: float, den: float, empty: float) -> float:
    return float(num) / float(den) if den else float(empty)


def dice(pred, gt) -> float:
    """Dice similarity coefficient 2|P∩G| / (|P|+|G|) (eq. 18); 1.0 if both empty."""
    c = confusion(pred, gt)
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn, 1.0)


def volumetric_similarity(pred, gt) -> float:
    """Volumetric similarity 1 - ||P|-|G|| / (|P|+|G|) (eq. 19); 1.0 if both empty."""
    c = confusion(pred, gt)
    return 1.0 - _ratio(abs(c.fn - c.fp), 2 * c.tp + c.fp + c.fn, 0.0)


def sensitivity(pred, gt) -> float:
    """Sensitivity (recall) TP / (TP+FN) (eq. 21); 1.0 if the reference is empty."""
    c = confusion(pred, gt)
    return _ratio(c.tp, c.tp + c.fn, 1.0)


def specificity(pred, gt) -> float:
    """Specificity TN / (TN+FP) (eq. 20); 1.0 if the reference has no background."""
    c = confusion(pred, gt)
    return _ratio(c.tn, c.tn + c.fp, 1.0)


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(pred, gt, average: str = "arithmetic") -> float:
    """Normalised mutual information of the two voxel labelings (eq. 22).

    Args:
        pred, gt: Binary masks.
        average: "arithmetic" (the paper's 2I/(H_A+H_B)) or "geometric" (I/sqrt(H_A H_B),
            the authors' scikit-learn 0.21 default).
    """
    if average not in ("arithmetic", "geometric"):
        raise InputError(f"average must be 'arithmetic' or 'geometric'; got {average!r}")
    c = confusion(pred, gt)
    joint = np.array([[c.tn, c.fp], [c.fn, c.tp]], dtype=np.float64)  # rows: gt, cols: pred
    rows, cols = joint.sum(1), joint.sum(0)
    h_gt, h_pred = _entropy(rows), _entropy(cols)
    if h_gt == 0.0 and h_pred == 0.0:
        return 1.0
    if h_gt == 0.0 or h_pred == 0.0:
        return 0.0
    n = joint.sum()
    nz = joint > 0
    mi = float((joint[nz] / n * np.log(joint[nz] * n / np.outer(rows, cols)[nz])).sum())
    norm = (h_gt + h_pred) / 2.0 if average == "arithmetic" else float(np.sqrt(h_gt * h_pred))
    return float(np.clip(mi / norm, 0.0, 1.0))


def cohen_kappa(pred, gt) -> float:
    """Cohen's kappa (P_o - P_e) / (1 - P_e) over voxels (eq. 23); 1.0 if P_e = 1."""
    c = confusion(pred, gt)
    n = float(c.tp + c.fp + c.fn + c.tn)
    p_o = (c.tp + c.tn) / n
    p_e = ((c.tp + c.fp) * (c.tp + c.fn) + (c.fn + c.tn) * (c.fp + c.tn)) / (n * n)
    return 1.0 if p_e >= 1.0 else float((p_o - p_e) / (1.0 - p_e))


def _surface_distances(pred: np.ndarray, gt: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``pred`` to ``gt``'s surface and back."""
    union = np.argwhere(pred | gt)
    lo = np.maximum(union.min(0) - 2, 0)
    hi = np.minimum(union.max(0) + 3, pred.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    pred, gt = pred[box], gt[box]
    surf_pred = pred & ~ndimage.binary_erosion(pred)
    surf_gt = gt & ~ndimage.binary_erosion(gt)
    to_gt = ndimage.distance_transform_edt(~surf_gt, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~surf_pred, sampling=spacing)
    return to_gt[surf_pred], to_pred[surf_gt]


def _empty_distance(pred: np.ndarray, gt: np.ndarray, spacing) -> float | None:
    """Defined distance for empty masks, or None when both have foreground."""
    has_pred, has_gt = pred.any(), gt.any()
    if has_pred and has_gt:
        return None
    if not has_pred and not has_gt:
        return 0.0
    return float(np.linalg.norm(np.asarray(pred.shape) * np.asarray(spacing, float)))


def _check_assd_method(method: str) -> None:
    if method not in ASSD_METHODS:
        raise InputError(f"ASSD method must be 'symmetric_mean' or 'pooled'; got {method!r}")


def _distance_metrics(pred: np.ndarray, gt: np.ndarray, spacing,
                      assd_method: str = "symmetric_mean") -> tuple[float, float]:
    """(HD95, ASSD) in mm with the defined values for empty masks."""
    empty = _empty_distance(pred, gt, spacing)
    if empty is not None:
        return empty, empty
    d_pg, d_gp = _surface_distances(pred, gt, spacing)
    pooled = np.concatenate([d_pg, d_gp])
    mean = float(pooled.mean()) if assd_method == "pooled" else float((d_pg.mean() + d_gp.mean()) / 2.0)
    return float(np.percentile(pooled, 95)), mean


def hd95(pred, gt, spacing=1.0) -> float:
    """95th percentile symmetric Hausdorff distance in mm (medpy's definition).

    The 95th percentile of the pooled surface-to-surface distances in both directions.

    Raises:
        InputError: For invalid masks or spacing (see :func:`check_mask`, :func:`check_spacing`).
    """
    pred, gt = _pair(pred, gt)
    return _distance_metrics(pred, gt, check_spacing(spacing, pred.ndim))[0]


def assd(pred, gt, spacing=1.0, method: str = "symmetric_mean") -> float:
    """Average symmetric surface distance in mm.

    With S_P, S_G the surface voxels and d(x, S) the distance from x to the nearest voxel of S:

    * ``"symmetric_mean"`` (default; SimpleITK, older medpy; the tables):
      (mean_{p in S_P} d(p, S_G) + mean_{g in S_G} d(g, S_P)) / 2.
    * ``"pooled"`` (current medpy, MONAI):
      (sum_{p in S_P} d(p, S_G) + sum_{g in S_G} d(g, S_P)) / (|S_P| + |S_G|).

    Raises:
        InputError: For an unknown ``method`` or invalid masks or spacing.
    """
    _check_assd_method(method)
    pred, gt = _pair(pred, gt)
    return _distance_metrics(pred, gt, check_spacing(spacing, pred.ndim), method)[1]


def compute_metrics(pred, gt, spacing=1.0, reference_compat: bool = False,
                    assd_method: str = "symmetric_mean") -> dict:
    """All metrics of ``pred`` against the reference ``gt``.

    Args:
        pred: Predicted mask (nonzero = foreground; finite, non-negative values).
        gt: Reference mask of the same shape.
        spacing: Voxel spacing in mm per axis (or one number), for HD95 and ASSD (default 1 mm on every axis, 2D or 3D).
        reference_compat: Reproduce the authors' columns (see the module docstring).
        assd_method: ``"symmetric_mean"`` (default) or ``"pooled"``; see :func:`assd`.

    Returns:
        Dict with keys ``METRIC_NAMES`` (floats; distances in mm).

    Raises:
        InputError: For invalid masks, spacing or ``assd_method``.
    """
    _check_assd_method(assd_method)
    pred, gt = _pair(pred, gt)
    spacing = check_spacing(spacing, pred.ndim)
    result = {
        "dsc": dice(pred, gt),
        "vs": volumetric_similarity(pred, gt),
        "sen": sensitivity(pred, gt),
        "spec": specificity(pred, gt),
        "nmi": nmi(pred, gt),
        "ck": cohen_kappa(pred, gt),
    }
    if reference_compat:
        c = confusion(pred, gt)
        inverted = c.tp + c.fn == 0  # their script inverts both masks when the reference is empty
        tp, fp, fn = (c.tn, c.fn, c.fp) if inverted else (c.tp, c.fp, c.fn)
        result["dsc"] = _ratio(2 * tp, 2 * tp + fp + fn, 0.0)
        result["sen"] = _ratio(c.tp, c.tp + c.fp, 0.0)
        result["spec"] = _ratio(c.tn, c.tn + c.fn, 0.0)
        result["nmi"] = nmi(pred, gt, average="geometric")
    result["hd95"], result["assd"] = _distance_metrics(pred, gt, spacing, assd_method)
    return result
