"""``lsdebm demo``: reconstruct a real thick-slice vertebra with the bundled LSD-EBM and show the recorded run.

With a display it opens napari with the explorer docked, the sample pair (a real VerSe L3 of a
validation subject by default, ``--sample phantom`` for the phantom), the checkpoint loaded and
the run already recorded (scrub it with the t and k sliders). Without one (no
$DISPLAY, or ``--headless``) it runs the same pipeline and writes NIfTI volumes, the
trajectory, PNGs of the 3D view at a few steps, the latent-variance plot and metrics to
``--out`` (:mod:`lsdebm.explore.demo`).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo", help="reconstruct a real vertebra with the bundled LSD-EBM (viewer, or files when headless)",
        description="Run LSD-EBM on a real vertebra degraded by 5 mm sagittal slabs (VerSe 2019, a subject no "
                    "checkpoint trained on; or a phantom) and explore the recorded run in napari; without a "
                    "display, write the outputs to --out instead.")
    parser.add_argument("--checkpoint", help="checkpoint name or .safetensors file (default: bundled lsdebm-default)")
    parser.add_argument("--headless", action="store_true", help="write files instead of opening the viewer")
    parser.add_argument("--out", default="lsdebm-demo", help="output folder when headless (default ./lsdebm-demo)")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs already in --out")
    parser.add_argument("--sample", default="real", choices=("real", "phantom"),
                        help="real: a VerSe 2019 vertebra (CC BY-SA 4.0) of a validation subject (default); "
                             "phantom: the procedural phantom at the checkpoint's grid")
    parser.add_argument("--level", default="L3", help="vertebra level L1..L5 (default L3)")
    parser.add_argument("--seed", type=int, default=0, help="thick-slice simulation and sampling seed (default 0)")
    parser.add_argument("--steps", type=int, help="diffusion depth t* (default: the checkpoint's)")
    parser.add_argument("--langevin-steps", "--K", dest="langevin_steps", type=int,
                        help="Langevin iterations K per reverse step (default: the checkpoint's; --K is the old name)")
    parser.add_argument("--step-size", type=float, help="Langevin step size (default: the checkpoint's)")
    parser.add_argument("--repeats", type=int, default=1, help="independent chains (default 1)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--render", default="auto", choices=("auto", "pyvista", "matplotlib"),
                        help="PNG renderer when headless (default auto: pyvista off-screen, else matplotlib)")
    return parser


def run(args) -> int:
    """Record the run, then show it (display) or write it (headless)."""
    from tqdm import tqdm

    from lsdebm.cli.view import has_display
    from lsdebm.errors import CheckpointError, InputError
    from lsdebm.explore import make_settings
    from lsdebm.explore.demo import check_out, demo_case, demo_checkpoint, record_demo, write_demo
    from lsdebm.explore.record import METHODS
    from lsdebm.methods import check_settings
    from lsdebm.nn.registry import is_refinement
    from lsdebm.runtime.checkpoint import load_checkpoint
    from lsdebm.runtime.device import resolve_device

    headless = args.headless or not has_display()
    ckpt = load_checkpoint(demo_checkpoint(args.checkpoint), resolve_device(args.device))
    if not is_refinement(ckpt.kind):
        raise CheckpointError(f"{ckpt.path}: holds a {ckpt.kind} model; the demo needs an LSD-EBM, VAE or LEBM")
    out = Path(args.out)
    if headless:
        check_out(out, args.overwrite)
    m = ckpt.config.model
    case = demo_case(m, args.sample, args.level, args.seed)
    if args.langevin_steps is not None and args.langevin_steps < 1:  # named as reconstruct and evaluate name it
        raise InputError(f"--langevin-steps {args.langevin_steps} must be >= 1")
    settings = make_settings(ckpt.kind, args.steps, args.langevin_steps, args.step_size, args.seed, args.repeats)
    check_settings(ckpt.model, settings)  # a bad --steps is refused before the progress bar starts
    print(f"{METHODS[ckpt.kind]} {ckpt.path.name} on {args.sample} {case.name} ({m.grid}^3 at {m.spacing:g} mm)"
          + (f"; data: {case.pair.attribution}" if case.pair.attribution else ""))
    with tqdm(unit="event", desc="sampling") as bar:
        def progress(p):
            bar.total = p.total
            bar.update(p.done - bar.n)
        output = record_demo(ckpt, case, settings, progress)
    if not headless:  # open the explorer on the recorded run
        from napari_lsdebm import launch

        launch.show_demo(ckpt, case, output)
        launch.run()
        return 0
    res = write_demo(out, ckpt, case, output, overwrite=args.overwrite, backend=args.render)
    rec, lq = res.metrics["reconstruction_vs_hq"], res.metrics["input_lq_vs_hq"]
    print(f"DSC {rec['dsc']:.4f} (thick-slice input: {lq['dsc']:.4f}); {output.seconds:.1f} s sampling")
    if "run_pasted_without_output_step_vs_hq" in res.metrics:
        alone = res.metrics["run_pasted_without_output_step_vs_hq"]["dsc"]
        print(f"  the run's own 2 mm result pasted back without the measurement-aware output step: DSC {alone:.4f}")
    print(f"wrote {len(res.files)} files to {out.resolve()}/ (3D views rendered with {res.render_backend})")
    for name, path in res.files.items():
        print(f"  {path.name}")
    return 0

