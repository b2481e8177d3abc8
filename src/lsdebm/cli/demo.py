"""``lsdebm demo``: generate one phantom pair and print its metrics (a first look)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``demo`` subcommand."""
    parser = subparsers.add_parser("demo", help="generate one HQ/LQ phantom pair and print its metrics")
    parser.add_argument("--level", default="L3", help="vertebra level L1..L5 (default L3)")
    parser.add_argument("--seed", type=int, default=0, help="subject seed (default 0)")
    parser.add_argument("--size", type=int, default=64, help="grid size (default 64)")
    parser.add_argument("--spacing", type=float, default=2.0, help="spacing in mm (default 2.0)")
    return parser


def run(args) -> int:
    """Generate the pair, simulate the thick-slice input, print its metrics against HQ."""
    import numpy as np

    from lsdebm.data.phantoms import PART_LABELS, make_vertebra
    from lsdebm.data.thickslice import ThickSliceParams, simulate_thick_slice
    from lsdebm.metrics import compute_metrics

    phantom = make_vertebra(args.level, args.seed, args.size, args.spacing)
    params = ThickSliceParams()
    lq = simulate_thick_slice(phantom.mask, args.spacing, params, np.random.default_rng(args.seed))
    print(f"Phantom {phantom.level} seed {args.seed}: {args.size}^3 at {args.spacing} mm, "
          f"{int(phantom.mask.sum())} HQ voxels, {int(lq.sum())} LQ voxels "
          f"({params.plane} {params.thickness} mm slices)")
    for label, name in PART_LABELS.items():
        part = phantom.parts == label
        kept = (lq[part] > 0).mean() if part.any() else float("nan")
        print(f"  {name:<11} {int(part.sum()):>7} voxels, {kept:6.1%} kept in LQ")
    print("LQ input vs HQ reference:")
    for name, value in compute_metrics(lq, phantom.mask, (args.spacing,) * 3).items():
        print(f"  {name.upper():>5}  {value:.4f}{' mm' if name in ('hd95', 'assd') else ''}")
    return 0
