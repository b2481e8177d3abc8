"""``lsdebm bench``: measure sampling, decoding, reconstruction, training speed and memory."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lsdebm.errors import InputError


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``bench`` subcommand."""
    from lsdebm.bench.runner import SECTIONS

    parser = subparsers.add_parser(
        "bench", help="benchmark the sampler, decoder, reconstruction, training and memory on this machine",
        description="Medians over --repeats runs after warm-up; device, threads and load are recorded. "
                    "Uses the bundled checkpoints of the preset when installed, else fresh weights "
                    "(timing does not depend on weights).")
    parser.add_argument("--preset", default="default", help="config preset (default, paper, reference, tiny)")
    parser.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (default 5)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections (default all: {','.join(SECTIONS)})")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="smaller peak/memory measurements (smoke runs)")
    parser.add_argument("--json", metavar="FILE", help="also write the full results as JSON ('-' for stdout only)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json FILE")
    return parser


def table(report: dict) -> str:
    """A short human-readable summary of a report."""
    env, rows = report["environment"], []
    rows.append(f"device {env['device']} ({env.get('gpu') or env['cpu']}), {env['torch_threads']} threads, "
                f"torch {env['torch']}, load {', '.join(f'{x:.2f}' for x in env['load_average'] or [])}")
    rows.append(f"preset {report['preset']}; models: "
                + ", ".join(f"{k}={v}" for k, v in report["sources"].items()))
    for t in report["targets"]:
        mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        measured = "n/a" if t["measured"] is None else f"{t['measured']:.4g}"
        rows.append(f"  {t['target']:<58} {measured:>10}  (limit {t['limit']:g})  {mark}")
    return "\n".join(rows)


def run(args) -> int:
    """Run the benchmarks, print the summary (or JSON) and optionally write the JSON file."""
    import torch

    from lsdebm.bench.runner import run_benchmarks
    from lsdebm.fileio import atomic_write, check_target, check_writable

    if args.json and args.json != "-":  # refused before minutes of measuring, not after
        check_writable(check_target(args.json, args.overwrite))
    if args.repeats < 1:
        raise InputError(f"--repeats {args.repeats} must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads {args.threads} must be >= 1")
        torch.set_num_threads(args.threads)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    if not sections:  # it printed the table's header and measured nothing
        from lsdebm.bench.runner import SECTIONS

        raise InputError(f"--only {args.only!r} names no benchmark; expected one or more of {', '.join(SECTIONS)}")
    report = run_benchmarks(args.preset, args.device, args.repeats, args.quick, sections,
                            log=lambda msg: print(msg, file=sys.stderr, flush=True))
    text = json.dumps(report, indent=1, default=float)
    if args.json == "-":
        print(text)
        return 0
    print(table(report))
    if args.json:
        path = atomic_write(args.json, lambda tmp: Path(tmp).write_text(text + "\n"), overwrite=args.overwrite)
        print(f"wrote {path}")
    return 0
