"""``lsdebm phantoms``: write a set of high-/low-quality phantom pairs."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace

from lsdebm.data.thickslice import INTERPOLATIONS, PLANE_AXES, TEST_RANGES, TRAIN_RANGES
from lsdebm.errors import InputError

RANGE_PRESETS = {"train": TRAIN_RANGES, "test": TEST_RANGES}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``phantoms`` subcommand."""
    parser = subparsers.add_parser(
        "phantoms",
        help="generate procedural vertebra HQ/LQ pairs as NIfTI",
        description="Write DIR/hq, DIR/lq, DIR/parts (NIfTI) and DIR/manifest.csv. Levels cycle L1..L5.",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--n", type=int, default=10, help="number of cases (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="set seed (default 0)")
    parser.add_argument("--size", type=int, default=64, help="grid size per axis (default 64)")
    parser.add_argument("--spacing", type=float, default=2.0, help="voxel spacing in mm (default 2.0)")
    parser.add_argument("--ranges", choices=sorted(RANGE_PRESETS), default="train",
                        help="simulator setting ranges (default train; test adds 5-6 mm slices)")
    group = parser.add_argument_group("simulator options (fix a setting instead of drawing it)")
    group.add_argument("--plane", choices=list(PLANE_AXES), help="acquisition plane")
    group.add_argument("--thickness", type=float, help="slice thickness in mm (3-6 typical)")
    group.add_argument("--gap", type=float, help="gap between slices in mm")
    group.add_argument("--noise", type=float, help="boundary noise amplitude (0-0.5)")
    group.add_argument("--blur", type=float, help="in-plane blur sigma in mm (0-5)")
    group.add_argument("--interpolation", choices=list(INTERPOLATIONS), help="resampling to isotropic")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    return parser


def ranges_from_args(args):
    """The preset ranges with any fixed simulator options applied (a NaN or infinite one refused by name)."""
    for name in ("thickness", "gap", "noise", "blur"):
        value = getattr(args, name)
        if value is not None and not math.isfinite(value):  # numpy's uniform draw raised an OverflowError
            raise InputError(f"--{name} {value}: expected a finite number")
    ranges = RANGE_PRESETS[args.ranges]
    fixed = {
        "planes": (args.plane,) if args.plane else None,
        "thickness": (args.thickness, args.thickness) if args.thickness is not None else None,
        "gap": (args.gap, args.gap) if args.gap is not None else None,
        "noise_amplitude": (args.noise, args.noise) if args.noise is not None else None,
        "inplane_blur": (args.blur, args.blur) if args.blur is not None else None,
        "interpolation": args.interpolation,
    }
    return replace(ranges, **{k: v for k, v in fixed.items() if v is not None})


def run(args) -> int:
    """Generate and write the set; prints the manifest path."""
    from lsdebm.data.phantom_set import write_set

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} cases", end="", file=sys.stderr, flush=True)

    manifest = write_set(args.out, args.n, args.seed, args.size, args.spacing,
                         ranges_from_args(args), overwrite=args.overwrite, progress=progress)
    print(file=sys.stderr)
    print(manifest)
    return 0
