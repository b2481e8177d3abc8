"""Compare VAE, LEBM and LSD-EBM (plus ReconNet alone and the raw input) on a held-out phantom.

Runs every method on one default-preset test phantom (64^3 at 2 mm; the evaluation's test set:
seed 90000, test simulator ranges), prints the metrics, lays the results out in napari's grid
mode and saves a screenshot with its provenance sidecar::

    xvfb-run -a python examples/compare_methods.py --out outputs/compare.png            # headless
    python examples/compare_methods.py --case 3 --mode overlap --show                    # interactive

``--pick N`` scans the first N test cases and shows the one where the methods differ most (the
largest spread of DSC between VAE, LEBM and LSD-EBM). Checkpoints default to the bundled ones.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lsdebm.data.nifti import affine_spacing
from lsdebm.data.phantom_set import generate_pairs
from lsdebm.data.thickslice import TEST_RANGES
from lsdebm.methods import RunSettings
from lsdebm.review.compare import METHODS, Comparison, MethodResult, compare_methods, load_compare_checkpoints, summary

TEST_SEED = 90000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", type=int, default=0, help="index into the test set (default 0)")
    p.add_argument("--pick", type=int, default=0, help="scan this many test cases, show the most differing one")
    p.add_argument("--seed", type=int, default=TEST_SEED, help="test-set and sampling seed (default 90000)")
    p.add_argument("--mode", choices=("masks", "overlap"), default="masks",
                   help="show masks, or TP/FP/FN against the ground truth")
    p.add_argument("--out", default="outputs/compare.png", help="screenshot path (PNG)")
    p.add_argument("--size", type=int, nargs=2, default=(900, 1500), metavar=("H", "W"), help="canvas size in pixels")
    p.add_argument("--show", action="store_true", help="keep the viewer open")
    p.add_argument("--overwrite", action="store_true", help="replace an existing screenshot")
    p.add_argument("--cache", default=None, help="an .npz to reuse the chosen case's results from (written "
                   "if missing), to re-render without re-running")
    for kind in ("reconnet",) + METHODS:
        p.add_argument(f"--{kind}", default=None, help=f"{kind} checkpoint (default bundled {kind}-default)")
    return p.parse_args(argv)


def save_results(path, case: int, comparison) -> None:
    meta = [{k: getattr(r, k) for k in ("key", "label", "metrics", "seconds", "provenance")}
            for r in comparison.results]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, case=case, affine=comparison.affine, meta=json.dumps(meta),
                        **{f"mask_{r.key}": r.mask for r in comparison.results})


def load_results(path):
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        results = [MethodResult(m["key"], m["label"], f[f"mask_{m['key']}"], None, m["metrics"], m["seconds"],
                                m["provenance"]) for m in meta]
        affine = f["affine"]
        return int(f["case"]), Comparison(results, affine, affine_spacing(affine))


def spread(comparison) -> float:
    dsc = [r.metrics["dsc"] for r in comparison.results if r.key in METHODS]
    return max(dsc) - min(dsc)


def main(argv=None) -> int:
    args = parse_args(argv)
    models = load_compare_checkpoints({k: getattr(args, k) for k in ("reconnet",) + METHODS})
    grid = next(iter(models.values())).config.model.grid
    spacing = next(iter(models.values())).config.model.spacing
    best = load_results(args.cache) if args.cache and Path(args.cache).is_file() else None
    # a cached run re-renders its own case (which --pick chose), whatever --case/--pick say now
    n = best[0] + 1 if best is not None else max(args.pick, args.case + 1)
    pairs = generate_pairs(n, args.seed, grid, spacing, TEST_RANGES)
    candidates = [] if best is not None else range(n) if args.pick else [args.case]
    for i in candidates:
        start = time.perf_counter()
        c = compare_methods(pairs[i].lq, pairs[i].affine, models, RunSettings(seed=args.seed), pairs[i].hq)
        print(f"case {i} ({pairs[i].name}): DSC spread {spread(c):.3f} ({time.perf_counter() - start:.1f} s)")
        if best is None or spread(c) > spread(best[1]):
            best = (i, c)
    i, comparison = best
    pair = pairs[i]
    if args.cache:
        save_results(args.cache, i, comparison)
    print(f"\n{pair.name} ({pair.level}, {pair.sim_params.get('plane')} {pair.sim_params.get('thickness'):.1f} mm "
          f"slices), metrics against the high-quality mask:")
    print(f"{'method':<10}{'voxels':>8}{'DSC':>8}{'VS':>8}{'SEN':>8}{'SPEC':>8}{'NMI':>8}{'CK':>8}"
          f"{'HD95':>8}{'ASSD':>8}{'s':>7}")
    for row in summary(comparison):
        print(f"{row['method']:<10}{row['voxels']:>8}" + "".join(
            f"{row[k]:>8.3f}" for k in ("dsc", "vs", "sen", "spec", "nmi", "ck", "hd95", "assd"))
              + f"{row['seconds']:>7.1f}")
    screenshot(args, pair, comparison)
    return 0


def settle(rounds: int = 5) -> None:
    """Process Qt events for a moment (the window shows and the canvas draws)."""
    from qtpy.QtWidgets import QApplication

    for _ in range(rounds):
        QApplication.processEvents()
        time.sleep(0.2)


def screenshot(args, pair, comparison) -> None:
    import napari

    from lsdebm.review.export import export_image
    from napari_lsdebm._ui.layers import volume_layer
    from napari_lsdebm.widgets.compare import SHOW_MODES, show_comparison
    from napari_lsdebm.widgets.export import viewer_provenance

    viewer = napari.Viewer(title=f"napari-lsdebm: compare methods on {pair.name}")
    canvas = viewer.window._qt_viewer.canvas.native
    viewer.window._qt_window.resize(viewer.window._qt_window.width() + args.size[1] - canvas.width(),
                                    viewer.window._qt_window.height() + args.size[0] - canvas.height())
    settle()
    layers = {}
    for data, name in ((pair.hq, f"HQ ({pair.name})"), (pair.lq, f"LQ ({pair.name})"),
                       (pair.parts, f"parts ({pair.name})")):
        d, kwargs, kind = volume_layer(np.asarray(data), pair.affine, name)
        layers[name] = getattr(viewer, f"add_{kind}")(d, **kwargs)
    mode = SHOW_MODES[1] if args.mode == "overlap" else SHOW_MODES[0]
    show_comparison(viewer, comparison, layers[f"LQ ({pair.name})"], layers[f"HQ ({pair.name})"], mode)
    for layer in viewer.layers:
        if layer.visible and hasattr(layer, "name_overlay"):
            layer.name_overlay.font_size = 14
    settle()  # let the canvas draw before capturing
    image = viewer.screenshot(canvas_only=True, flash=False)
    path, side = export_image(args.out, image, viewer_provenance(viewer), overwrite=args.overwrite)
    print(f"\nscreenshot: {path} (provenance: {side})")
    if args.show:
        napari.run()
    else:
        viewer.close()


if __name__ == "__main__":
    raise SystemExit(main())
