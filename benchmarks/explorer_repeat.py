"""Repeated explorer runs: does the tenth run cost what the first did, and is a VAE run in the dock
close to ``lsdebm.methods.run`` per case?

Run under a display (or Xvfb)::

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/explorer_repeat.py [--runs 10]

It docks the explorer in a shown napari viewer, opens the phantom sample and clicks Run ``--runs``
times in a row with the bundled ``lsdebm-default`` checkpoint and its default settings, as a person
would (new runs replace the previous run's layers). For each run it reports

* ``click_to_drawn``: from the click to the final frame's mesh (or volume) handed to the canvas and
  the canvas drawn;
* ``compute``: the sampling itself (the run's own ``seconds``, on the worker thread);
* ``layers``: the number of layers afterwards (stays constant when runs replace each other).

Then a VAE run in the dock (same click-to-drawn and compute), against ``lsdebm.methods.run`` on
the same model-grid input with the same stages (ReconNet, then the VAE: the command line's work per
case, median of five). JSON on stdout.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time


def wait(app, until, timeout: float = 600.0) -> None:
    end = time.perf_counter() + timeout
    while not until():
        if time.perf_counter() > end:
            raise TimeoutError("the explorer did not finish in time")
        app.processEvents()
        time.sleep(0.02)  # a 2 ms poll starved the run's worker thread of the GIL (VAE 0.13 s, not 0.04)


def drawn(w) -> bool:
    """The final frame of the followed trajectory is on the canvas (mesh handed over, or volume sliced)."""
    layer = w.layer
    if w.worker is not None or layer is None:
        return False
    surface = w.surfaces.get(id(layer))
    if surface is not None and surface.active:
        return surface.shown is not None and len(surface.shown.vertices) > 0
    return layer.data.last_key is not None and layer.data.last_key == layer.data.wanted


def click_run(app, viewer, w) -> dict:
    """Click Run, wait until the result is drawn; click-to-drawn and compute seconds."""
    seconds = {}
    show = w.show_result

    def record(output, context=None):
        seconds["compute"] = output.seconds
        show(output, context)

    w.show_result = record
    start = time.perf_counter()
    w.run_panel.run_button.click()
    if w.worker is None:
        raise RuntimeError(w.status.text())
    wait(app, lambda: drawn(w))
    viewer.window._qt_viewer.canvas.native.repaint()  # the canvas draws what it was handed
    app.processEvents()
    w.show_result = show
    return {"click_to_drawn": round(time.perf_counter() - start, 3), "compute": round(seconds["compute"], 3),
            "layers": len(viewer.layers)}


def command_line_seconds(w, repeats: int = 5) -> float:
    """Median seconds of ``lsdebm.methods.run`` on the explorer's model-grid input with the stages the dock runs
    (ReconNet first when it is ticked, then the method): the CLI's work per case."""
    import numpy as np
    import torch

    from lsdebm.explore import prepare_input
    from lsdebm.methods import run
    from napari_lsdebm._ui.pickers import affine_of

    ckpt, stage1 = w.checkpoint_panel.for_run(w.run_panel)
    m = ckpt.config.model
    x, _ = prepare_input(np.asarray(w.input_combo.layer().data), affine_of(w.input_combo.layer()), m.grid,
                         m.spacing, model_cfg=m)
    xt = torch.as_tensor(x, dtype=torch.float32)[None, None]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            run(ckpt.model, xt, w.run_panel.settings(), stage1=None if stage1 is None else stage1.model)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs {args.runs}: expected at least 1")
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1920, 1080)
    _, w = viewer.window.add_plugin_dock_widget("napari-lsdebm", "LSD-EBM explorer")
    app = napari.qt.get_qapp()
    w.open_sample()
    w.run_panel.device.setCurrentText("cpu")
    if w.checkpoint_panel.load("lsdebm-default") is None:
        raise SystemExit(w.checkpoint_panel.error.text())
    settings = {"K": w.run_panel.K.value(), "depth": w.run_panel.depth.value(),
                "step_size": w.run_panel.step_size.value()}
    runs = [click_run(app, viewer, w) for _ in range(args.runs)]
    clicks = [r["click_to_drawn"] for r in runs]
    w.run_panel.set_kind("vae")
    vae = click_run(app, viewer, w)
    vae_again = click_run(app, viewer, w)
    cli = command_line_seconds(w)
    report = {"lsdebm_settings": settings,
              "lsdebm_runs": runs, "first_click_to_drawn": clicks[0],
              "median_later_click_to_drawn": statistics.median(clicks[1:]) if len(clicks) > 1 else None,
              "last_over_first": round(clicks[-1] / clicks[0], 2),
              "vae_dock": [vae, vae_again], "vae_command_line_per_case": round(cli, 4),
              "vae_dock_compute_over_cli": round(vae_again["compute"] / cli, 2)}
    print(json.dumps(report, indent=1))
    viewer.close()


if __name__ == "__main__":
    main()
