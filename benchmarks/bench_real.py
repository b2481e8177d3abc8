"""Benchmark: the default reconstruction of real thick-slice vertebrae, one vertebra and a lumbar spine.

Usage: python benchmarks/bench_real.py [--device cpu] [--threads N] [--vertebrae 5] [--fine-spacing 0.8]
Prints machine-readable JSON (environment, per-vertebra seconds and Dice at 1 mm and on the finer grid,
the spine, targets).
"""
import argparse
import json
import sys

import torch

from lsdebm.bench.real import run
from lsdebm.errors import InputError

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int)
    p.add_argument("--vertebrae", type=int, default=5)
    p.add_argument("--fine-spacing", type=float, default=0.8, help="the finer grid's spacing in mm (a CT pixel)")
    args = p.parse_args()
    if not 0.2 <= args.fine_spacing <= 5.0:
        p.error(f"--fine-spacing {args.fine_spacing:g}: expected a grid spacing in mm between 0.2 and 5")
    if args.vertebrae < 1:
        p.error(f"--vertebrae {args.vertebrae}: expected at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = run(args.device, args.vertebrae, args.fine_spacing)
    except InputError as e:  # e.g. --device cuda where there is no GPU: one line, not a traceback
        p.error(str(e))
    json.dump(result, sys.stdout, indent=2, default=float)
    print()
