"""Benchmark: end-to-end reconstruction of one volume per method (vae, lebm, lsdebm; with and without ReconNet).

Usage: python benchmarks/bench_reconstruct.py [--preset default] [--device cpu] [--repeats 5] [--threads N] [--quick]
Prints machine-readable JSON (environment, results, targets) on stdout; progress on stderr.
"""
import sys

from lsdebm.bench.runner import script_main

if __name__ == "__main__":
    sys.exit(script_main(('end_to_end',)))
