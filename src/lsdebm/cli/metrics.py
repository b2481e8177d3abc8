"""``lsdebm metrics PRED GT``: compare two NIfTI masks."""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np

from lsdebm.errors import InputError, InputWarning


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``metrics`` subcommand."""
    parser = subparsers.add_parser(
        "metrics",
        help="DSC, VS, SEN, SPEC, NMI, CK, HD95, ASSD of a prediction against a reference",
        description="Nonzero voxels are foreground (use --label to pick one label); a probability map (values "
        "in [0, 1]) is thresholded at 0.5. "
        "Distances are in mm from the reference's affine.",
    )
    parser.add_argument("pred", help="predicted mask (.nii/.nii.gz)")
    parser.add_argument("gt", help="reference mask (.nii/.nii.gz)")
    parser.add_argument("--label", type=int,
                        help="compare only this label id in both files (an error if the reference lacks "
                             "it; a prediction without it scores as empty, with a warning)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--reference-compat", action="store_true",
                        help="reproduce the authors' columns (SEN=precision, SPEC=NPV, geometric NMI)")
    return parser


def _check_label(path: str, data: np.ndarray, label: int) -> None:
    """Refuse a ``--label`` that ``data`` does not hold (it would score an empty mask)."""
    if np.any(data == label):
        return
    present = [v.item() for v in np.unique(data) if v != 0]
    shown = ", ".join(f"{v:g}" for v in present[:20]) + (", ..." if len(present) > 20 else "")
    raise InputError(f"{path}: label {label} not found; labels present: {shown or 'none (the volume is all zero)'}")


def _as_mask(path: str, data: np.ndarray) -> np.ndarray:
    """Integer masks and label maps as they are; probabilities (non-integer values in [0, 1], e.g. a
    ``--save-probs`` output) thresholded at 0.5 with a warning; other non-integer values refused."""
    data = np.asarray(data)
    if data.dtype.kind != "f" or np.array_equal(data, np.round(data)):
        return data
    if np.nanmin(data) >= 0 and np.nanmax(data) <= 1:
        warnings.warn(f"{path} holds probabilities (values between 0 and 1); scored as the mask where they are "
                      ">= 0.5", InputWarning, stacklevel=2)
        return (data >= 0.5).astype(np.uint8)
    example = data[data != np.round(data)].flat[0]
    raise InputError(f"{path} holds non-integer values such as {example}; expected a mask, a label map or "
                     "probabilities in [0, 1]")


def run(args) -> int:
    """Print the metrics."""
    from lsdebm.data.nifti import read_volume
    from lsdebm.evaluation.metrics import check_mask, compute_metrics

    pred, gt = read_volume(args.pred), read_volume(args.gt)
    pred_data, gt_data = _as_mask(args.pred, pred.data), _as_mask(args.gt, gt.data)
    for path, data in ((args.pred, pred_data), (args.gt, gt_data)):
        check_mask(data, path)  # negative values counted as foreground here; the metrics API refused them
    same_grid = ("expected both on one grid: write the reconstruction on the reference's grid "
                 f"(lsdebm reconstruct ... --like {args.gt}) or resample one file onto the other")
    if pred.data.shape != gt.data.shape:
        raise InputError(f"{args.pred} has shape {pred.data.shape} but {args.gt} has {gt.data.shape}; {same_grid}")
    if not np.allclose(pred.affine, gt.affine, atol=1e-3):
        raise InputError(f"{args.pred} and {args.gt} have different affines; {same_grid}")
    if args.label == 0:  # it scored the backgrounds against each other
        raise InputError("--label 0 is the background; expected the id of a structure (nonzero)")
    if args.label is not None:
        _check_label(args.gt, gt_data, args.label)  # nothing to score against
        if not np.any(pred_data == args.label):  # a prediction that lost the structure scores as empty
            warnings.warn(f"{args.pred}: label {args.label} not found; scored as an empty prediction",
                          InputWarning, stacklevel=2)
    elif not np.any(gt_data):  # two empty files scored DSC 1.0, an empty reference the grid's diagonal
        raise InputError(f"{args.gt}: the reference has no foreground voxels (all zero); nothing to score against")
    elif not np.any(pred_data):
        warnings.warn(f"{args.pred}: no foreground voxels; scored as an empty prediction", InputWarning, stacklevel=2)
    select = (lambda d: d == args.label) if args.label is not None else (lambda d: d != 0)
    result = compute_metrics(select(pred_data), select(gt_data), gt.spacing,
                             reference_compat=args.reference_compat)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, value in result.items():
            unit = " mm" if name in ("hd95", "assd") else ""
            print(f"{name.upper():>5}  {value:.4f}{unit}")
    return 0
