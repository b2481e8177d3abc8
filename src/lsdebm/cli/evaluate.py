"""``lsdebm evaluate``: the paper's Table 1 and Table 3 on a held-out phantom test set."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lsdebm.errors import InputError

TEST_SEED = 90000


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand."""
    from lsdebm.evaluation.rows import ROW_KEYS

    p = subparsers.add_parser(
        "evaluate", help="score raw LQ, ReconNet, ReconNet+VAE/LEBM/LSD-EBM and LSD-EBM on a test set",
        description="Writes OUT/report.md, OUT/report.json and OUT/cases.csv. Without --data (or when DIR does "
                    "not exist) a test set is generated with the test simulator ranges (5-6 mm slices included, "
                    "which training never sees) from --seed (default 90000; training uses other seeds). "
                    "With --real [PATH]: real vertebra masks degraded by the thick-slice simulator instead, "
                    "written to OUT/real_report.md, OUT/real_summary.json and OUT/real_cases.csv.")
    p.add_argument("--data", help="phantom set directory (lsdebm phantoms layout); generated there if missing")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--n", type=int, help="cases to generate (default 100 = 20 per level)")
    p.add_argument("--phantoms", type=int, metavar="N", help="generate N cases even if --data is given")
    p.add_argument("--seed", type=int, help=f"test-set seed and sampling seed (default {TEST_SEED}; --real: 0)")
    p.add_argument("--checkpoint-dir", help="directory with <kind>-default.safetensors (default: bundled)")
    p.add_argument("--methods", help=f"comma-separated rows (default all): {','.join(ROW_KEYS)}")
    p.add_argument("--steps", type=int, help="LSD-EBM diffusion depth / LEBM posterior steps (default: checkpoint)")
    p.add_argument("--langevin-steps", type=int, help="Langevin iterations K per reverse step (default: checkpoint)")
    p.add_argument("--step-size", type=float, help="Langevin step size (default: checkpoint)")
    p.add_argument("--batch-size", type=int, help="cases per batch (default 10)")
    p.add_argument("--timing-cases", type=int, help="cases timed with batch size 1 (default 3; 0 = off)")
    p.add_argument("--reference-compat", action="store_true",
                   help="add the paper's column semantics: SEN*=precision, SPEC*=NPV, NMI*=geometric")
    p.add_argument("--record-test-metrics", action="store_true",
                   help="store the results per checkpoint (name + sha256) in the bundled test_metrics.json")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:N]")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--overwrite", action="store_true", help="replace existing report files / data set")
    from lsdebm.cli.evaluate_real import add_real_arguments

    add_real_arguments(p)
    return p


def load_pairs(args, grid: int, spacing: float):
    """(pairs, description) of the test set: read from --data, or generated with TEST_RANGES."""
    from lsdebm.data.phantom_set import MANIFEST, generate_pairs, read_set, write_set
    from lsdebm.data.thickslice import TEST_RANGES

    n = args.phantoms if args.phantoms is not None else args.n
    if n < 1:
        raise InputError(f"number of test cases {n} must be >= 1")
    data = Path(args.data) if args.data else None
    if data is not None and (data / MANIFEST).is_file() and args.phantoms is None:
        pairs = read_set(data)
        return pairs, f"read from {data} ({len(pairs)} cases)"
    desc = (f"{n} phantoms generated with seed {args.seed}, test simulator ranges "
            f"(thickness {TEST_RANGES.thickness[0]:g}-{TEST_RANGES.thickness[1]:g} mm), {grid}^3 at {spacing:g} mm")
    if data is None:
        return generate_pairs(n, args.seed, grid, spacing, TEST_RANGES), desc
    write_set(data, n, args.seed, grid, spacing, TEST_RANGES, overwrite=args.overwrite)
    return read_set(data), desc + f", written to {data}"


#: Phantom-mode options whose defaults are applied only in phantom mode (``--real`` refuses them when given).
PHANTOM_DEFAULTS = {"n": 100, "batch_size": 10, "timing_cases": 3}


def run(args) -> int:
    """Evaluate, write the three report files, optionally record the test metrics."""
    import datetime

    from lsdebm.cli.evaluate_common import check_out, check_settings_for, check_values, load_averages, parse_methods
    from lsdebm.cli.evaluate_real import check_real_options, run_real
    from lsdebm.evaluation.phantoms import evaluate, quality_bars, row_checkpoints, summarize
    from lsdebm.evaluation.report import REPORT_FILES, record_metrics, render_markdown, timing_rows, write_reports
    from lsdebm.methods import RunSettings
    from lsdebm.provenance import checkpoint_record, command_line, versions
    from lsdebm.runtime.device import device_name, resolve_device
    from lsdebm.tasks.reconstruct import effective_settings, set_threads

    check_real_options(args)
    check_values(args)
    if args.real is not None:
        return run_real(args)
    args.seed = TEST_SEED if args.seed is None else args.seed
    for name, default in PHANTOM_DEFAULTS.items():  # None until here, so that --real can refuse them when given
        setattr(args, name, default if getattr(args, name) is None else getattr(args, name))
    rows = parse_methods(args.methods)
    if args.batch_size < 1 or args.timing_cases < 0:
        raise InputError("--batch-size must be >= 1 and --timing-cases >= 0")
    out = check_out(args.out, REPORT_FILES, args.overwrite)
    set_threads(args.threads)
    device = resolve_device(args.device)
    models = row_checkpoints(rows, args.checkpoint_dir, device)
    settings = RunSettings(steps=args.steps, K=args.langevin_steps, step_size=args.step_size, seed=args.seed)
    check_settings_for(models, settings, args, rows)
    first = next(iter(models.values()), None)
    grid = first.config.model.grid if first else 64
    spacing = first.config.model.spacing if first else 2.0
    pairs, test_set = load_pairs(args, grid, spacing)
    start, load_start = time.perf_counter(), load_averages()

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} cases, {time.perf_counter() - start:.0f} s", end="", file=sys.stderr, flush=True)

    result = evaluate(pairs, models, rows, settings, args.batch_size, args.reference_compat, args.timing_cases,
                      progress)
    print(file=sys.stderr)
    summary = summarize(result)
    bars = quality_bars(summary)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    meta = {"command": command_line(getattr(args, "argv", None)), "created_utc": created,
            "device": device_name(device), "test_set": test_set,
            "seconds_total": round(time.perf_counter() - start, 1), "batch_size": args.batch_size,
            "load_average_start": load_start, "load_average_end": load_averages(),
            "checkpoints": [checkpoint_record(c, k) for k, c in models.items()],
            "settings": {k: effective_settings(c.model, settings) for k, c in models.items() if k != "reconnet"},
            "versions": versions()}
    timing = timing_rows(result, models)
    for path in write_reports(out, result, summary, bars, timing, meta, overwrite=args.overwrite):
        print(path)
    if args.record_test_metrics:
        print(record_metrics(models, summary, meta))
    print(render_markdown(result, summary, bars, timing, meta).split("## Reproduce")[0], file=sys.stderr)
    return 0
