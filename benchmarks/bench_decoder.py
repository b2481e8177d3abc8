"""Benchmark: one decode (fast, plain), the decoder's convolutions alone, the machine's matmul/conv peak,
scrub frames through the decode cache.

Usage: python benchmarks/bench_decoder.py [--preset default] [--device cpu] [--repeats 5] [--threads N] [--quick]
Prints machine-readable JSON (environment, results, targets) on stdout; progress on stderr.
"""
import sys

from lsdebm.bench.runner import script_main

if __name__ == "__main__":
    sys.exit(script_main(('peak', 'decode', 'scrub')))
