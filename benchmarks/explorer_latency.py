"""Time from a slider move to the new frame on screen in the explorer (cached and uncached).

Run under a display (or ``xvfb-run -a``)::

    xvfb-run -a .venv/bin/python benchmarks/explorer_latency.py [--checkpoint PATH] [--preset default]

Without ``--checkpoint`` it uses the bundled ``lsdebm-default`` if installed, else an untrained
model of ``--preset`` (decode cost does not depend on the weights). It records a short run
(K=10), shows it with the explorer exactly as after a run, then for each trial moves the ``t``
slider and waits until the layer holds the decoded frame *and* the canvas has drawn it:

* uncached: a frame that is neither decoded nor prefetched (the cache is cleared first);
* cached: a frame decoded before (after stepping away, back to it).

Each move is one ``t`` slider step (k fixed at the last recorded iteration), reported as the
time until the layer is handed the decoded frame and until the canvas has drawn it, in 3D
(iso-surface) and 2D (slice).

It also reports the bare decoder time for one latent. Results are printed as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch
    from qtpy.QtWidgets import QApplication

    import napari
    from lsdebm.runtime.checkpoint import bundled_checkpoints, load_checkpoint, save_checkpoint
    from lsdebm.config import get_preset
    from lsdebm.explore import drain, make_decoder, make_settings, record_run
    from lsdebm.explore.demo import demo_case
    from lsdebm.nn import build_model

    path = args.checkpoint or bundled_checkpoints().get("lsdebm-default")
    if path is None:
        torch.manual_seed(0)
        path = save_checkpoint(build_model("lsdebm", get_preset(args.preset)), "/tmp/lsdebm-bench.safetensors",
                               info={"description": "untrained, for timing"}, overwrite=True)
    ckpt = load_checkpoint(path, args.device)
    m = ckpt.config.model
    case = demo_case(m.grid, m.spacing)
    output = drain(record_run(ckpt, case.lq, make_settings("lsdebm", K=10)))
    traj = output.trajectory

    decode = make_decoder(ckpt.model)
    z = traj.latent(0, -1)[None]
    decode(z)
    bare = []
    for _ in range(3):
        t0 = time.perf_counter()
        decode(z)
        bare.append(time.perf_counter() - t0)

    viewer = napari.Viewer()
    _, explorer = viewer.window.add_plugin_dock_widget("napari-lsdebm", "LSD-EBM explorer")
    lq = viewer.add_labels(case.lq, scale=(m.spacing,) * 3, name="LQ")
    explorer.show_result(output, {"ckpt": ckpt, "source": lq, "crop": None, "affine": case.affine})
    layer, app = explorer.layer, QApplication.instance()
    vols = layer.data
    draws = []
    viewer.window._qt_viewer.canvas._scene_canvas.events.draw.connect(lambda e: draws.append(time.perf_counter()))
    handed = {}  # key -> when the layer was last handed that decoded frame
    after_access = vols._after_access

    def spy(key, vol, s, k):
        handed[key] = time.perf_counter()
        after_access(key, vol, s, k)

    vols._after_access = spy
    labels = list(viewer.dims.axis_labels)
    ta, ka = labels.index("t"), labels.index("k")

    def settle(seconds=0.3):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
        vols.jobs.wait_idle(120)
        app.processEvents()

    def move(s, k) -> tuple[float, float]:
        """(seconds until the layer holds the decoded frame, seconds until the canvas has drawn it)."""
        settle()
        t0 = time.perf_counter()
        viewer.dims.set_current_step(ta, s)  # one slider move (k stays where it is)
        data_at = None
        while True:
            app.processEvents()
            if data_at is None and handed.get(vols.key(s, k), 0) > t0:  # the layer was handed the frame
                data_at = handed[vols.key(s, k)]
            if data_at is not None and draws and draws[-1] > data_at:
                return data_at - t0, time.perf_counter() - t0
            if time.perf_counter() - t0 > 120:
                raise TimeoutError(f"frame never shown: ndisplay {viewer.dims.ndisplay} want {vols.key(s, k)} "
                                   f"wanted {vols.wanted} last {vols.last_key} cached {vols.cached(s, k) is not None} "
                                   f"data_at {data_at} draws {len(draws)}")

    n_s, n_k = vols.shape[:2]
    reverse = [s for s in range(n_s) if traj.frame_info(s)[0] == "reverse"]
    result = {"preset": ckpt.config.preset, "grid": m.grid, "device": args.device, "threads": torch.get_num_threads(),
              "load_average": os.getloadavg(), "checkpoint": str(path), "bare_decode_s_median": statistics.median(bare)}
    for ndisplay in (3, 2):
        viewer.dims.ndisplay = ndisplay
        times = {"uncached": [], "cached": []}
        k = n_k - 1
        viewer.dims.set_current_step(ka, k)
        for i in range(args.trials):
            s = reverse[i % len(reverse)]
            vols.cache.clear()
            times["uncached"].append(move(s, k))
            move(reverse[(i + 2) % len(reverse)], k)  # step away (not timed) ...
            times["cached"].append(move(s, k))  # ... and back: a cache hit
        for name, pairs in times.items():
            data, screen = zip(*pairs)
            result[f"{ndisplay}d_{name}_data_s_median"] = round(statistics.median(data), 4)
            result[f"{ndisplay}d_{name}_on_screen_s_median"] = round(statistics.median(screen), 4)
            result[f"{ndisplay}d_{name}_on_screen_s"] = [round(x, 3) for x in screen]
    print(json.dumps(result, indent=2))
    viewer.close()


if __name__ == "__main__":
    main()
