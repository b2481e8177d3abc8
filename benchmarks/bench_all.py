"""Benchmark: every benchmark section (what lsdebm bench runs).

Usage: python benchmarks/bench_all.py [--preset default] [--device cpu] [--repeats 5] [--threads N] [--quick]
Prints machine-readable JSON (environment, results, targets) on stdout; progress on stderr.
"""
import sys

from lsdebm.bench.runner import script_main

if __name__ == "__main__":
    sys.exit(script_main(('peak', 'energy', 'chain', 'decode', 'scrub', 'end_to_end', 'training', 'memory')))
