"""Benchmark: one Langevin iteration (fast, plain) vs the bare energy MLP forward+backward; the full reverse
chain T x K, single and batched repeats.

Usage: python benchmarks/bench_sampler.py [--preset default] [--device cpu] [--repeats 5] [--threads N] [--quick]
Prints machine-readable JSON (environment, results, targets) on stdout; progress on stderr.
"""
import sys

from lsdebm.bench.runner import script_main

if __name__ == "__main__":
    sys.exit(script_main(('energy', 'chain')))
