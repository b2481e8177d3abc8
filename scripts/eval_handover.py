"""Thick slices as other tools hand them over (docs/real-anatomy.md, session 18): the 22 validation cases at
one thickness (11 vertebrae, sagittal and axial slabs, the product simulator), bundled default, scored on the
truth grid against the raw input, in three forms the evaluation never made:

- ``flipped``: the native thick-slice file stored with its array axes flipped (an LPS/LAS file), written on the
  truth grid (``--like`` a RAS image);
- ``cubic``: the thick slices resampled onto the truth grid with cubic splines (``scipy.ndimage``'s default
  order) and thresholded at 0.5, instead of the nearest-neighbour staircase;
- ``turned``: the native file written on the truth grid turned by ``--degrees`` (``--like`` a CT or 3D T1 that is
  not parallel to the series);
- ``tilted``: slabs cut in a frame turned by ``--degrees`` about an array axis across them, their staircase resampled
  (nearest) onto the truth grid (a series sliced in the scanner's frame, a truth on an oblique CT header).

    .venv/bin/python scripts/eval_handover.py flipped|cubic|turned|tilted [--thickness 5] [--degrees 2]
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from lsdebm.data.boxes import resample
from lsdebm.data.real import degrade, slab_axis
from lsdebm.evaluation.metrics import dice
from lsdebm.evaluation.real import real_cases
from lsdebm.runtime.loading import load_models
from lsdebm.tasks.reconstruct import reconstruct_volume, set_threads


def flipped(case, degrees):
    """The native file with axes 0 and 1 stored the other way round (the same voxels in the world)."""
    flip = np.eye(4)
    for axis in (0, 1):
        flip[axis, axis], flip[axis, 3] = -1.0, case.lq.shape[axis] - 1.0
    return case.lq[::-1, ::-1], case.affine @ flip, case.truth, case.truth_affine


def cubic(case, degrees):
    """The native file resampled onto the truth grid with cubic splines, thresholded at 0.5."""
    index = np.linalg.inv(case.affine) @ case.truth_affine
    data = ndimage.affine_transform(case.lq.astype(np.float32), index[:3, :3], index[:3, 3],
                                    output_shape=case.truth.shape, order=3) >= 0.5
    return data.astype(np.uint8), case.truth_affine, case.truth, case.truth_affine


def turned(case, degrees):
    """The truth grid turned by ``degrees`` about its centre (x, y/2, -z), and the truth resampled onto it."""
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("xyz", (degrees, degrees / 2, -degrees), degrees=True).as_matrix()
    centre = case.truth_affine[:3, :3] @ (np.array(case.truth.shape) / 2.0) + case.truth_affine[:3, 3]
    turn[:3, 3] = centre - turn[:3, :3] @ centre
    grid = turn @ case.truth_affine
    truth = resample(case.truth.astype(np.float32), case.truth.shape, grid, case.truth_affine, 1) >= 0.5
    return case.lq, case.affine, truth, grid


def tilted(case, degrees):
    """The case's slabs cut in a frame turned by ``degrees`` about an array axis across them, brought back onto the
    truth grid."""
    across = np.eye(3)[(slab_axis(case.truth_affine, case.plane) + 1) % 3]
    turn = Rotation.from_rotvec(np.radians(degrees) * across).as_matrix()
    centre = (np.array(case.truth.shape) - 1) / 2.0
    turned_truth = ndimage.affine_transform(case.truth.astype(np.float32), turn, offset=centre - turn @ centre,
                                            order=1) >= 0.5
    lq = degrade(turned_truth.astype(np.uint8), case.truth_affine, case.params, np.random.default_rng(0))
    back = ndimage.affine_transform(lq.astype(np.float32), turn.T, offset=centre - turn.T @ centre, order=0)
    return (back >= 0.5).astype(np.uint8), case.truth_affine, case.truth, case.truth_affine


FORMS = {"flipped": flipped, "cubic": cubic, "turned": turned, "tilted": tilted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("form", choices=sorted(FORMS))
    parser.add_argument("--thickness", type=float, default=5.0)
    parser.add_argument("--degrees", type=float, default=2.0, help="turn of the output grid (turned) or slabs (tilted)")
    args = parser.parse_args()
    set_threads(1)
    models = load_models("reconnet", device="cpu")
    raw, out = [], []
    for case in real_cases(thicknesses=(args.thickness,), forms=("native",)):
        data, affine, truth, grid = FORMS[args.form](case, args.degrees)
        result = reconstruct_volume(models=models, data=data, affine=affine, out_grid=(truth.shape, grid))
        raw.append(dice(resample(data, truth.shape, grid, affine, 0) > 0, truth > 0))
        out.append(dice(np.asarray(result.mask) > 0, truth > 0))
    raw, out = np.array(raw), np.array(out)
    print(f"{args.form} {args.thickness:g} mm: raw {raw.mean():.4f} default {out.mean():.4f} gain "
          f"{(out - raw).mean():+.4f} better/worse {(out > raw).sum()}/{(out < raw).sum()} of {len(raw)}")


if __name__ == "__main__":
    main()
