"""``lsdebm evaluate --real [PATH]``: Table 1 on real vertebra masks degraded by the thick-slice simulator.

Not a subcommand of its own: :mod:`lsdebm.cli.evaluate` registers these options and hands
over to :func:`run_real` when ``--real`` is given.
"""
from __future__ import annotations

import argparse
import sys
import time

from lsdebm.errors import InputError

REAL_ONLY = ("split", "levels", "planes", "thicknesses", "forms", "consistency_weight", "consistency_steps",
             "projection", "slab_model", "simulator", "simulator_option", "truth_spacing")
PHANTOM_ONLY = {"data": "--data", "phantoms": "--phantoms", "record_test_metrics": "--record-test-metrics",
                "n": "--n", "batch_size": "--batch-size", "timing_cases": "--timing-cases"}
REAL_SEED = 0


def add_real_arguments(p: argparse.ArgumentParser) -> None:
    """Register ``--real`` and the options that only apply to it."""
    g = p.add_argument_group("real anatomy (--real)")
    g.add_argument("--real", nargs="?", const="", metavar="PATH",
                   help="evaluate on real HQ masks degraded by the thick-slice simulator: PATH is a folder or "
                        "manifest.csv of real masks (default: the bundled set)")
    g.add_argument("--split", help="manifest split, or 'all' (default: val where the masks have a val split -- the "
                                   "bundled set does -- else every mask, e.g. a plain folder)")
    g.add_argument("--levels", help="comma-separated vertebral levels, or 'all' (default L1,L2,L3,L4,L5); a mask "
                                    "whose level is unknown (no manifest level, none in its file name) is kept")
    g.add_argument("--unguided", action="store_true",
                   help="the paper's sampler: no data-consistency term, no projection onto the observed slabs")
    g.add_argument("--consistency-weight", type=float, metavar="LAMBDA",
                   help="data-consistency weight of the LSD-EBM Langevin energy (default: checkpoint)")
    g.add_argument("--consistency-steps", type=int, metavar="N", help="guided iterations (default: checkpoint)")
    g.add_argument("--projection", type=float, metavar="W",
                   help="weight 0-1 of the projection onto the observed slabs (default: checkpoint)")
    g.add_argument("--slab-model", metavar="FILE",
                   help="learned slab interpolation of the output step: 'default' (bundled slabnet-default, the "
                        "default), a .safetensors file, or 'none' (the classical shape-based interpolation)")
    g.add_argument("--simulator", choices=("product", "second"),
                   help="thick-slice simulator: the product's (default) or a second one written apart from it "
                        "(boundary jitter before slicing, box or Gaussian slab profile, nearest or linear resampling)")
    g.add_argument("--simulator-option", action="append", metavar="KEY=VALUE",
                   help="a setting of --simulator second (repeatable): profile=box|gauss, jitter_mm, smoothness_mm, "
                        "gap_mm, blur_mm, threshold, resample=nearest|linear")
    g.add_argument("--planes", help="comma-separated acquisition planes (default sagittal,axial)")
    g.add_argument("--thicknesses", help="comma-separated slice thicknesses in mm, 1-10 (default 3,5,7)")
    g.add_argument("--truth-spacing", type=float, metavar="MM",
                   help="isotropic spacing of the truth grid the masks are resampled to, degraded on and scored on "
                        "(default 1; e.g. 0.8 for CT pixels, 1.5 for TotalSegmentator's grid)")
    g.add_argument("--forms", help="truth (LQ on the truth grid), native (LQ on its thick-slice grid) and/or "
                                   "original (LQ on the HQ mask's own grid, scored there); default truth,native")


def _split_list(text: str | None, default: tuple) -> tuple:
    return default if text is None else tuple(v.strip() for v in text.split(",") if v.strip())


def _thicknesses(text: str | None) -> tuple[float, ...]:
    values = _split_list(text, ("3", "5", "7"))
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise InputError(f"--thicknesses {text!r}: expected comma-separated numbers in mm such as 3,5,7") from None


def _split(text: str | None, source) -> str | None:
    """The split evaluated: as given ('all': None), else val where ``source`` has one, else every row."""
    from lsdebm.data.real import has_split

    if text is None:
        return "val" if has_split(source, "val") else None
    return None if text.strip() == "all" else text


def _levels(text: str | None) -> tuple[str, ...] | None:
    from lsdebm.data.real import LEVEL_PATTERN
    from lsdebm.evaluation.real import LUMBAR

    if text is not None and text.strip() == "all":
        return None
    levels = tuple(v.upper() for v in _split_list(text, LUMBAR))
    bad = [v for v in levels if not LEVEL_PATTERN.fullmatch(v)]
    if bad or not levels:
        raise InputError(f"--levels {text!r}: expected comma-separated vertebral levels such as L1,L2,T12 "
                         "(C1-C7, T1-T13, L1-L6, S1) or 'all'")
    return levels


def check_real_options(args) -> None:
    """Refuse real-only options without ``--real`` and phantom-only ones with it (one line each)."""
    if getattr(args, "unguided", False) and (args.consistency_weight is not None or args.projection is not None):
        raise InputError("--unguided turns data consistency off; do not combine it with --consistency-weight or "
                         "--projection")
    if args.real is None:
        given = [f"--{name.replace('_', '-')}" for name in REAL_ONLY if getattr(args, name, None) is not None]
        given += ["--unguided"] if getattr(args, "unguided", False) else []
        if given:
            raise InputError(f"{given[0]} applies to real anatomy only; add --real [PATH]")
        return
    given = [flag for name, flag in PHANTOM_ONLY.items()  # 0 is given (0 == False, so no "not in (None, False)")
             if getattr(args, name, None) is not None and getattr(args, name) is not False]
    if given:
        raise InputError(f"{given[0]} applies to the phantom test set only; drop it or --real")


def real_protocol(args) -> dict:
    """The validated protocol: split, levels, planes, thicknesses, forms, seed, source, simulator (None: ours),
    truth spacing."""
    from lsdebm.evaluation.real import SPACING_MM, check_protocol
    from lsdebm.evaluation.second_simulator import SecondSimulator

    split = _split(args.split, args.real or None)
    levels = _levels(args.levels)
    planes = _split_list(args.planes, ("sagittal", "axial"))
    thicknesses = _thicknesses(args.thicknesses)
    forms = _split_list(args.forms, ("truth", "native"))
    spacing = SPACING_MM if getattr(args, "truth_spacing", None) is None else args.truth_spacing
    check_protocol(planes, thicknesses, forms, split, spacing)
    second = getattr(args, "simulator", None) == "second"
    if getattr(args, "simulator_option", None) and not second:
        raise InputError("--simulator-option sets the second simulator; add --simulator second")
    return {"source": args.real or None, "split": split, "levels": levels, "planes": planes, "thicknesses": thicknesses,
            "forms": forms, "seed": REAL_SEED if args.seed is None else args.seed, "truth_spacing": spacing,
            "simulator": SecondSimulator.from_options(args.simulator_option) if second else None}


def _describe(protocol: dict, cases) -> str:
    from lsdebm.data.real import subjects_known

    masks = sorted({c.mask for c in cases})
    subjects = sorted({c.subject for c in cases})
    if subjects_known(protocol["source"]):
        of = f"of {len(subjects)} subject{'s' * (len(subjects) != 1)} ({', '.join(subjects)})"
    else:  # a plain folder: each file would count as a subject of its own
        of = (f"in {len(subjects)} file{'s' * (len(subjects) != 1)} "
              "(subjects not known: pass a manifest.csv with a subject column)")
    unknown = len({c.mask for c in cases if not c.level})
    levels = "all levels" if protocol["levels"] is None else "levels " + ",".join(protocol["levels"])
    levels += f" ({unknown} of unknown level)" if unknown else ""
    split = "every mask" if protocol["split"] is None else f"split {protocol['split']}"
    return (f"{len(masks)} real mask{'s' * (len(masks) != 1)} {of} from "
            f"{protocol['source'] or 'the bundled set'}, {split}, {levels}, planes "
            f"{','.join(protocol['planes'])}, thicknesses {','.join(f'{t:g}' for t in protocol['thicknesses'])} mm, "
            f"forms {','.join(protocol['forms'])}, truth grid {protocol['truth_spacing']:g} mm, "
            f"seed {protocol['seed']}")


def run_real(args) -> int:
    """Validate everything, build the cases, evaluate every row, write the three real report files."""
    import datetime

    from lsdebm.cli.evaluate_common import check_out, check_settings_for, load_averages, parse_methods
    from lsdebm.cli.reconstruct import consistency_overrides
    from lsdebm.evaluation.phantoms import row_checkpoints
    from lsdebm.evaluation.real import REAL_SIMULATOR, evaluate_real, real_cases, row_models, summarize_real
    from lsdebm.evaluation.report_real import REAL_REPORT_FILES, render_real_markdown, write_real_reports
    from lsdebm.methods import RunSettings
    from lsdebm.provenance import checkpoint_record, command_line, versions
    from lsdebm.runtime.device import device_name, resolve_device
    from lsdebm.runtime.loading import load_slab_model
    from lsdebm.tasks.reconstruct import effective_settings, set_threads

    rows = parse_methods(args.methods)
    protocol = real_protocol(args)
    out = check_out(args.out, REAL_REPORT_FILES, args.overwrite)
    set_threads(args.threads)
    device = resolve_device(args.device)
    loaded = row_checkpoints(rows, args.checkpoint_dir, device)
    settings = RunSettings(steps=args.steps, K=args.langevin_steps, step_size=args.step_size, seed=protocol["seed"],
                           **consistency_overrides(args))
    check_settings_for(loaded, settings, args, rows)
    slab = load_slab_model(args.slab_model or "default", device)
    cut = []
    cases = real_cases(protocol["source"], protocol["split"], protocol["planes"], protocol["thicknesses"],
                       protocol["seed"], protocol["forms"], levels=protocol["levels"], simulator=protocol["simulator"],
                       dropped=cut, truth_spacing=protocol["truth_spacing"])
    if cut:
        print(f"left out {len(cut)} mask(s) cut by the field of view (incomplete vertebrae): {', '.join(cut)}",
              file=sys.stderr)
    start, load_start = time.perf_counter(), load_averages()

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} cases, {time.perf_counter() - start:.0f} s", end="", file=sys.stderr, flush=True)

    result = evaluate_real(cases, row_models(rows, loaded, slab), rows, settings, progress)
    print(file=sys.stderr)
    summary = summarize_real(result)
    meta = {"command": command_line(getattr(args, "argv", None)),
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": device_name(device), "test_set": _describe(protocol, cases),
            "protocol": {**{k: list(v) if isinstance(v, tuple) else v for k, v in protocol.items() if k != "simulator"},
                         "simulator": REAL_SIMULATOR if protocol["simulator"] is None else
                         protocol["simulator"].as_dict(), "offset": "uniform in [0, thickness) per case"},
            "seconds_total": round(time.perf_counter() - start, 1), "load_average_start": load_start,
            "load_average_end": load_averages(), "checkpoints": [checkpoint_record(c, k) for k, c in loaded.items()]
            + ([checkpoint_record(slab, "slab interpolation")] if slab is not None else []),
            "settings": {k: effective_settings(c.model, settings) for k, c in loaded.items() if k != "reconnet"},
            "versions": versions()}
    for path in write_real_reports(out, result, summary, meta, overwrite=args.overwrite):
        print(path)
    print(render_real_markdown(result, summary, meta).split("## Reproduce")[0], file=sys.stderr)
    return 0
