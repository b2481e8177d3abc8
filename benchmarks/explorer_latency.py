"""Time from a slider move to the new frame drawn in the explorer, with mesh and with volume rendering.

Run under a display (or Xvfb; software OpenGL is where volume rendering hurts)::

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/explorer_latency.py \
        [--checkpoint PATH] [--preset default] [--trials 8] [--volume-trials 3]

Without ``--checkpoint`` it uses the bundled ``lsdebm-default`` if installed, else an untrained
model of ``--preset``. It records a short run (K=10) and shows it with the explorer exactly as
after a run (3D), then, for the recorded run and for the same trajectory saved and reopened
from its ``.npz``, and for each render mode (``mesh``: Surface layer; ``volume``: iso-rendered
Image layer):

* ``t_step`` / ``k_step``: one step of the t (or k) slider, as when scrubbing: the time until
  the frame's data was handed to its layer and the canvas has drawn after that (the neighbours
  of the previous position were prefetched, as they are while a person scrubs);
* ``t_uncached``: a t step to a frame that is not decoded yet (cache cleared first; mesh only);
* ``rotate``: a camera rotation of 10 degrees until drawn.

It also reports the bare decoder time for one latent. Results are printed as JSON (seconds).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--trials", type=int, default=8, help="slider steps per measurement, mesh rendering")
    parser.add_argument("--volume-trials", type=int, default=3, help="the same for volume rendering (seconds each)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.trials < 1 or args.volume_trials < 0:
        parser.error(f"--trials {args.trials} / --volume-trials {args.volume_trials}: expected at least 1 / 0")

    import napari
    import torch

    from lsdebm.errors import LsdebmError
    from lsdebm.explore import drain, make_decoder, make_settings, record_run, run_metadata
    from lsdebm.explore.demo import demo_case

    try:
        ckpt, path = load(args.checkpoint, args.preset, args.device)
    except LsdebmError as exc:  # a missing or unreadable --checkpoint: one line, before any window opens
        parser.error(str(exc))
    m = ckpt.config.model
    case = demo_case(m, "phantom")  # the phantom sample on the model grid, as the plugin opens it
    settings = make_settings("lsdebm", K=10)  # recorded with the metadata the explorer writes: reopened, it finds
    output = drain(record_run(ckpt, case.x, settings, metadata=run_metadata(ckpt, settings)))  # its checkpoint
    result = {"preset": ckpt.config.preset, "grid": m.grid, "device": args.device,
              "threads": torch.get_num_threads(), "load_average": os.getloadavg(), "checkpoint": str(path),
              "bare_decode_s_median": bare_decode(make_decoder(ckpt.model), output.trajectory)}

    viewer = napari.Viewer()
    _, explorer = viewer.window.add_plugin_dock_widget("napari-lsdebm", "LSD-EBM explorer")
    lq = viewer.add_labels(case.x, scale=(m.spacing,) * 3, name="LQ")
    explorer.show_result(output, {"ckpt": ckpt, "source": lq, "crop": None, "affine": case.model_affine})
    timer = Timer(viewer, explorer)
    result["recorded"] = timer.measure_all(explorer.layer, args.trials, args.volume_trials)
    with tempfile.TemporaryDirectory() as tmp:
        saved = explorer.save_trajectory(str(Path(tmp) / "run.npz"))
        viewer.layers.remove(explorer.layer)
        viewer.open(saved, plugin="napari-lsdebm")
        result["reopened"] = timer.measure_all(explorer.layer, args.trials, args.volume_trials)
    print(json.dumps(result, indent=2))
    viewer.close()


def load(checkpoint: str | None, preset: str, device: str):
    """(LoadedCheckpoint, path): ``checkpoint``, else the bundled lsdebm-default, else an untrained ``preset``
    model."""
    import torch

    from lsdebm.config import get_preset
    from lsdebm.nn import build_model
    from lsdebm.runtime.checkpoint import bundled_checkpoints, load_checkpoint, save_checkpoint

    path = checkpoint or bundled_checkpoints().get("lsdebm-default")
    if path is None:
        torch.manual_seed(0)
        path = save_checkpoint(build_model("lsdebm", get_preset(preset)), "/tmp/lsdebm-bench.safetensors",
                               info={"description": "untrained, for timing"}, overwrite=True)
    return load_checkpoint(path, device), path


def bare_decode(decode, traj) -> float:
    """Median seconds to decode one latent."""
    z = traj.latent(0, -1)[None]
    decode(z)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        decode(z)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Timer:
    """Moves sliders and the camera of a viewer and waits until the result is drawn."""

    def __init__(self, viewer, explorer) -> None:
        from qtpy.QtWidgets import QApplication

        self.viewer, self.explorer, self.app = viewer, explorer, QApplication.instance()
        self.draws: list[float] = []
        viewer.window._qt_viewer.canvas._scene_canvas.events.draw.connect(
            lambda e: self.draws.append(time.perf_counter()))
        self.handed: dict = {}  # frame key -> when its volume or mesh was last handed to a layer
        self.vols = None

    def follow(self, layer) -> None:
        """Time the frames handed to ``layer`` (its TrajectoryVolumes, in either render mode)."""
        self.vols = vols = layer.data
        after_access = vols._after_access

        def spy(key, vol, s, k):
            after_access(key, vol, s, k)
            self.handed[key] = time.perf_counter()

        vols._after_access = spy

    def settle(self, seconds: float = 0.3) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.app.processEvents()
        self.vols.jobs.wait_idle(120)
        self.app.processEvents()

    def drawn_after(self, t0: float, ready) -> float:
        """Seconds from ``t0`` until ``ready()`` gives a time and the canvas has drawn after it."""
        at = None
        while True:
            self.app.processEvents()
            at = at or ready()
            if at is not None and self.draws and self.draws[-1] > at:
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > 120:
                raise TimeoutError("the frame was never drawn")

    def step(self, axis: int, value: int, key) -> float:
        """Seconds from one slider move to the frame ``key`` drawn."""
        self.settle()
        t0 = time.perf_counter()
        self.viewer.dims.set_current_step(axis, value)
        return self.drawn_after(t0, lambda: self.handed[key] if self.handed.get(key, 0) > t0 else None)

    def rotate(self) -> float:
        """Seconds from a 10 degree camera rotation to the canvas drawn."""
        from napari_lsdebm._ui.pickers import camera_of

        self.settle()
        camera = camera_of(self.viewer)
        t0 = time.perf_counter()
        a, b, c = camera.angles
        camera.angles = (a, b, c + 10.0)
        return self.drawn_after(t0, lambda: t0)

    def measure_all(self, layer, trials: int, volume_trials: int) -> dict:
        """Median seconds of every measurement for both render modes."""
        self.follow(layer)
        out = {}
        for render, n in (("mesh", trials), ("volume", volume_trials)):
            self.explorer.render_combo.setCurrentText(render)
            self.settle(1.0)
            times = self.slider_steps(layer, n, uncached=render == "mesh")
            times["rotate"] = [self.rotate() for _ in range(n)]
            for name, values in times.items():
                out[f"{render}_{name}_s_median"] = round(statistics.median(values), 4)
                out[f"{render}_{name}_s"] = [round(x, 3) for x in values]
        self.explorer.render_combo.setCurrentText("mesh")
        return out

    def slider_steps(self, layer, n: int, uncached: bool) -> dict[str, list[float]]:
        labels = list(self.viewer.dims.axis_labels)
        ta, ka = labels.index("t"), labels.index("k")
        vols = layer.data
        n_s, n_k = vols.shape[:2]
        reverse = [s for s in range(n_s) if vols.traj.frame_info(s)[0] == "reverse"]
        times = {"t_step": [], "k_step": []} | ({"t_uncached": []} if uncached else {})
        s, k = reverse[0], n_k - 1
        self.viewer.dims.set_current_step(ta, s)
        self.viewer.dims.set_current_step(ka, k)
        for i in range(n):
            s = reverse[(i + 1) % len(reverse)]  # one t step (wrapping to the first reverse frame)
            times["t_step"].append(self.step(ta, s, vols.key(s, k)))
            k = k - 1 if k > 0 else 1  # one k step
            times["k_step"].append(self.step(ka, k, vols.key(s, k)))
            if uncached:
                vols.cache.clear()
                s2 = reverse[(i + 2) % len(reverse)]
                times["t_uncached"].append(self.step(ta, s2, vols.key(s2, k)))
                self.viewer.dims.set_current_step(ta, s)
        return times


if __name__ == "__main__":
    main()
