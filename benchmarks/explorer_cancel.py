"""Time from a click on the explorer's Cancel to the run stopped and the viewer restored.

Run under a display (or Xvfb)::

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/explorer_cancel.py \
        [--checkpoint PATH] [--trials 5] [--after 20]

It opens the explorer's phantom sample, loads ``--checkpoint`` (default: the bundled
``lsdebm-default``), starts a run that would take minutes (K 100,000 Langevin iterations per step,
the sampler as a user gets it), waits until its progress bar passes ``--after`` percent of the first
step's iterations shown, clicks Cancel and measures

* ``stopped``: until the run's worker is gone (Run enabled again, status says cancelled);
* ``restored``: until the live preview layer is removed and the layers are the sample's three again.

The explorer's documentation promises a cancel "well under a second"; this prints the numbers (JSON,
seconds) with the machine's load, which a timed unit test cannot do honestly on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="LSD-EBM checkpoint (default: the bundled lsdebm-default)")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--after", type=int, default=20, help="progress (0-100) the run reaches before Cancel")
    args = parser.parse_args()
    if args.trials < 1 or not 0 <= args.after < 100:
        parser.error(f"--trials {args.trials} / --after {args.after}: expected at least 1 / 0-99")

    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from lsdebm.runtime.checkpoint import bundled_checkpoints

    path = args.checkpoint or bundled_checkpoints().get("lsdebm-default")
    if path is None or not os.path.isfile(path):
        parser.error(f"checkpoint {path!r} not found; pass --checkpoint FILE.safetensors")
    viewer = napari.Viewer()
    _, explorer = viewer.window.add_plugin_dock_widget("napari-lsdebm", "LSD-EBM explorer")
    app = QApplication.instance()
    explorer.open_sample()
    explorer.checkpoint_panel.load(str(path))
    sample = [layer.name for layer in viewer.layers]
    stopped, restored, notes = [], [], []
    for _ in range(args.trials):
        explorer.run_panel.K.setValue(100_000)
        explorer.run()
        wait(app, lambda: explorer.run_panel.progress.value() > args.after, "the run never made progress")
        t0 = time.perf_counter()
        explorer.run_panel.cancel_button.click()
        wait(app, lambda: explorer.worker is None, "the run did not stop")
        stopped.append(time.perf_counter() - t0)
        wait(app, lambda: [layer.name for layer in viewer.layers] == sample, "the preview layer stayed")
        restored.append(time.perf_counter() - t0)
        notes.append(explorer.status.text())
    print(json.dumps({"checkpoint": str(path), "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
                      "trials": args.trials, "stopped_s_median": round(statistics.median(stopped), 3),
                      "stopped_s": [round(x, 3) for x in stopped],
                      "restored_s_median": round(statistics.median(restored), 3),
                      "restored_s": [round(x, 3) for x in restored], "status": notes[-1]}, indent=2))
    viewer.close()


def wait(app, done, what: str, timeout_s: float = 300.0) -> None:
    """Process Qt events until ``done()``; a ``TimeoutError`` naming ``what`` after ``timeout_s``."""
    end = time.perf_counter() + timeout_s
    while not done():
        app.processEvents()
        time.sleep(0.002)
        if time.perf_counter() > end:
            raise TimeoutError(f"{what} within {timeout_s:g} s")


if __name__ == "__main__":
    main()
