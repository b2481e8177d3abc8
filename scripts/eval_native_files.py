"""Native thick slices scored as a user's files would be: the default output grid of `lsdebm reconstruct`
resampled onto the truth grid, and headers turned as an oblique MRI stores them (float32 affine).

The evaluation (`lsdebm evaluate --real`) passes the truth grid as the output grid and keeps affines in
float64; this script checks the two things that differ for a file (docs/real-anatomy.md, session 17).
``--slack 1e-6`` reproduces the grid rule before session 17 (a voxel too many on oblique float32 headers).

    .venv/bin/python scripts/eval_native_files.py [--thickness 5] [--seed 0] [--slack 1e-3]
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy.spatial.transform import Rotation

import lsdebm.data.grids as grids
from lsdebm.data.boxes import resample
from lsdebm.evaluation.metrics import dice
from lsdebm.evaluation.real import real_cases
from lsdebm.runtime.loading import load_models
from lsdebm.tasks.reconstruct import reconstruct_volume, set_threads


def on_truth(mask, affine, case) -> float:
    """Dice of ``mask`` (on ``affine``) resampled (nearest) onto the case's truth grid."""
    moved = resample(np.asarray(mask, np.float32), case.truth.shape, case.truth_affine, affine, 0) >= 0.5
    return dice(moved, case.truth > 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thickness", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0, help="seed of the header rotations")
    parser.add_argument("--slack", type=float, default=grids.GRID_SLACK, help="the grid rule's slack (voxels)")
    args = parser.parse_args()
    grids.GRID_SLACK = args.slack
    set_threads(1)
    models = load_models("reconnet", device="cpu")
    rng = np.random.default_rng(args.seed)
    rows: dict[str, list[float]] = {"raw": [], "truth grid": [], "default grid": [], "oblique float32 header": []}
    for case in real_cases(thicknesses=(args.thickness,), forms=("native",)):
        rows["raw"].append(on_truth(case.lq > 0, case.affine, case))
        result = reconstruct_volume(models=models, data=case.lq, affine=case.affine,
                                    out_grid=(case.truth.shape, case.truth_affine))
        rows["truth grid"].append(dice(np.asarray(result.mask) > 0, case.truth > 0))
        result = reconstruct_volume(models=models, data=case.lq, affine=case.affine,
                                    out_grid=grids.output_grid(case.lq.shape, case.affine))
        rows["default grid"].append(on_truth(np.asarray(result.mask) > 0, result.affine, case))
        turn = np.eye(4)
        turn[:3, :3] = Rotation.from_euler("xyz", rng.uniform(-20, 20, 3), degrees=True).as_matrix()
        stored = (turn @ case.affine).astype(np.float32).astype(float)
        case.truth_affine = turn @ case.truth_affine
        result = reconstruct_volume(models=models, data=case.lq, affine=stored,
                                    out_grid=grids.output_grid(case.lq.shape, stored))
        rows["oblique float32 header"].append(on_truth(np.asarray(result.mask) > 0, result.affine, case))
    raw = np.array(rows["raw"])
    for name, values in rows.items():
        gain = np.array(values) - raw
        print(f"{name:24s} Dice {np.mean(values):.4f}  gain {gain.mean():+.4f}  "
              f"better/worse {(gain > 0).sum()}/{(gain < 0).sum()} of {len(gain)}")


if __name__ == "__main__":
    main()
