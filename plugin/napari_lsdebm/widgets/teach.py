"""Teaching dock: generate digits from noise with EBM, LEBM and LSD-EBM side by side.

Each method becomes one image layer of shape (t, k, rows*H, cols*W) -- a grid of samples per
(t, k) frame -- placed side by side, so napari's own sliders (labelled t and k) scrub every
sampler at once. EBM and LEBM have no diffusion step; their frames repeat along t. The
explorer's variance/energy plots follow the sliders for the method chosen under "Plots for",
and an Explain panel says what is on screen. The plots dock under the canvas. Generation runs off the GUI
thread (:func:`napari_lsdebm._ui.jobs.start_job`).
"""
from __future__ import annotations

import math

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from lsdebm.data.digits import digit_mosaic
from lsdebm.explore import RunCancelled
from lsdebm.methods import RunSettings
from lsdebm.teach.checkpoints import load_teach
from lsdebm.teach.explain import explain
from lsdebm.teach.generate import METHOD_LABELS, GenerationFrames, record_generation
from napari_lsdebm._ui.closed_docks import retire
from napari_lsdebm._ui.docking import CloseWatcher, dock_below_canvas, dock_viewer, remove_dock
from napari_lsdebm._ui.gl_context import keep_canvas_current
from napari_lsdebm._ui.jobs import Outcome, start_job
from napari_lsdebm._ui.legends import show_canvas_note
from napari_lsdebm._ui.plots import TrajectoryPlots
from napari_lsdebm._ui.trajectory_layer import label_axes, leading_axes, set_leading

METHODS = ("ebm", "lebm", "lsdebm")
GAP = 6  # pixels between the method grids
CAPTIONS = "method names (teaching)"


def method_layer_data(frames: GenerationFrames, n_t: int) -> np.ndarray:
    """(n_t, n_k, rows*H, cols*W) mosaic frames; a method without diffusion steps repeats along t."""
    n = frames.images.shape[2]
    mosaic = digit_mosaic(frames.images, int(math.ceil(math.sqrt(n))), gap=1, fill=0.25)
    if mosaic.shape[0] == n_t:
        return mosaic
    return np.broadcast_to(mosaic[:1], (n_t,) + mosaic.shape[1:])


class TeachingWidget(QWidget):
    """Generate from noise (Algorithm 3 and its baselines) and scrub t and k."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer = dock_viewer(napari_viewer)  # not napari's plugin proxy (docking)
        self.frames: dict[str, GenerationFrames] = {}
        self._models: dict = {}
        self.worker = None
        self.n = QSpinBox(minimum=1, maximum=64, value=16)
        self.seed = QSpinBox(minimum=0, maximum=2 ** 31 - 1, value=0)
        self.every = QSpinBox(minimum=1, maximum=30, value=1)
        self.every.setToolTip("record every k-th Langevin iteration (and the last)")
        self.use = {m: QCheckBox(METHOD_LABELS[m], checked=True) for m in METHODS}
        self.generate_button = QPushButton("Generate from noise")
        self.cancel_button = QPushButton("Cancel", enabled=False)
        self.status = QLabel("Press Generate: each method turns noise into digits.")
        self.status.setWordWrap(True)
        self.plot_method = QComboBox()
        self.plot_method.addItems([METHOD_LABELS[m] for m in METHODS])
        self.plot_method.setCurrentIndex(2)
        self.plots = TrajectoryPlots()
        self.explain = QTextBrowser()
        self.explain.setMinimumWidth(220)

        form = QFormLayout()
        form.addRow("samples per method", self.n)
        form.addRow("seed", self.seed)
        form.addRow("record every k", self.every)
        for box in self.use.values():
            form.addRow(box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        plots_row = QHBoxLayout()
        plots_row.addWidget(QLabel("Plots for"))
        plots_row.addWidget(self.plot_method, 1)
        layout.addLayout(plots_row)
        layout.addWidget(QLabel("Explain"))
        layout.addWidget(self.explain, 1)
        window = getattr(self.viewer, "window", None)
        self.plots_dock = None
        if window is not None and hasattr(window, "add_dock_widget"):  # plots under the canvas, as in the explorer
            self.plots_dock = dock_below_canvas(window, self.plots, "Teaching plots")

        self.generate_button.clicked.connect(self.generate)
        self.cancel_button.clicked.connect(self.cancel)
        self.plot_method.currentIndexChanged.connect(self._plot_method_changed)
        self.viewer.dims.events.current_step.connect(self._on_step)
        keep_canvas_current(self.viewer)  # removing a hidden (t, k, y, x) layer segfaulted Mesa (gl_context)
        self._update_explain()
        self.closed = False  # the dock (or the viewer) was closed: a generation still ending shows nothing
        self._close_watcher = CloseWatcher(self, self._on_close)

    def _on_close(self) -> None:
        """The dock was closed: stop generating and following the sliders (the canvas note), close the plots."""
        self.closed = True
        self.cancel()
        self.viewer.dims.events.current_step.disconnect(self._on_step)
        remove_dock(self.viewer, self.plots_dock)
        self.plots_dock = None
        retire(self.plots)  # out of its dock: deleted at exit before PyQt's clean-up (closed_docks)

    # ------------------------------------------------------------------ generation
    def selected_methods(self) -> list[str]:
        return [m for m in METHODS if self.use[m].isChecked()]

    def _model(self, method: str):
        if method not in self._models:
            self._models[method] = load_teach(method).model
        return self._models[method]

    def generate(self) -> None:
        """Start generating with every checked method in a worker thread."""
        methods = self.selected_methods()
        if not methods:
            self.status.setText("Tick at least one method.")
            return
        n, seed, every = self.n.value(), self.seed.value(), self.every.value()

        def work(job):  # on the worker thread: a status line per method, then {method: frames}
            results = {}
            for m in methods:
                yield f"generating with {METHOD_LABELS[m]} ..."
                results[m] = record_generation(self._model(m), n, RunSettings(seed=seed), every=every,
                                               should_stop=job.cancelled)
                if job.cancelled():
                    raise RunCancelled("generation cancelled")
            return results

        self.generate_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.worker = start_job(work, self._finished, self.status.setText, what="generation")

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def _finished(self, outcome: Outcome) -> None:
        self.worker = None
        self.generate_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if outcome.status != "done" or self.closed:
            self.status.setText(outcome.message if outcome.status != "error" else f"error: {outcome.message}")
            return
        self.show_frames(outcome.output)
        self.status.setText("Done. Drag the t and k sliders (t = 0 and the last k are the final digits).")

    def show_frames(self, results: dict[str, GenerationFrames]) -> None:
        """Add or replace one layer per method, side by side, and label the sliders t and k."""
        self.frames = dict(results)
        n_t = max(f.images.shape[0] for f in results.values())
        for layer in [lay for lay in self.viewer.layers if lay.metadata.get("teach_method") not in (None, *results)]:
            self.viewer.layers.remove(layer)  # a method not run this time: its old digits would pass for new ones
        x = 0.0
        captions, anchors = [], []
        for m in METHODS:
            if m not in results:
                continue
            data = method_layer_data(results[m], n_t)
            name = f"teach: {METHOD_LABELS[m]}"
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            self.viewer.add_image(data, name=name, colormap="gray", contrast_limits=(0.0, 1.0),
                                  translate=(0, 0, 0, x), metadata={"teach_method": m})
            captions.append(METHOD_LABELS[m].split(" (")[0])
            anchors.append((-4.0, x + data.shape[-1] / 2))
            x += data.shape[-1] + GAP
        if CAPTIONS in self.viewer.layers:
            self.viewer.layers.remove(CAPTIONS)
        self.viewer.add_points(np.array(anchors), name=CAPTIONS, size=0.1, face_color="transparent",
                               border_color="transparent",
                               features={"method": captions},
                               text={"string": "{method}", "color": "white", "size": 11, "anchor": "center"})
        label_axes(self.viewer, ("t", "k", "y", "x"))
        self.viewer.reset_view()
        set_leading(self.viewer, 0, max(len(f.k_values) for f in results.values()) - 1)
        self._plot_method_changed()

    # ------------------------------------------------------------------ sliders, plots, explain
    def current_tk(self) -> tuple[int, int]:
        step = self.viewer.dims.current_step
        if len(step) < 4:
            return 0, 0
        ta, ka = leading_axes(self.viewer)
        return int(step[ta]), int(step[ka])

    def _plot_frames(self) -> GenerationFrames | None:
        return self.frames.get(METHODS[self.plot_method.currentIndex()])

    def _plot_method_changed(self, *_) -> None:
        frames = self._plot_frames()
        traj = None if frames is None else frames.plot_trajectory(4)
        method = METHOD_LABELS[METHODS[self.plot_method.currentIndex()]]
        self.plots.set_trajectory(traj, "" if frames else f"{method} was not in the last generation; tick it and "
                                  "generate." if self.frames else "Generate to see the sampler's plots.")
        self._on_step()

    def _on_step(self, *_) -> None:
        frames = self._plot_frames()
        if frames is not None:
            t, k = self.current_tk()
            t = min(t, len(frames.t_values) - 1)
            k = min(k, len(frames.k_values) - 1)
            traj = self.plots.traj
            s = traj.n_frames - 1 - t if traj is not None else 0  # reverse step t is frame n_frames-1-t
            self.plots.set_position(s, k)
        self._update_explain()

    def position_text(self) -> str:
        """The sliders in words: diffusion step t and Langevin iteration k counted from 0 ("" before a run)."""
        if not self.frames:
            return ""
        t, k = self.current_tk()
        ks = next(iter(self.frames.values())).k_values
        kv, last = int(ks[min(k, len(ks) - 1)]) - 1, int(ks[-1]) - 1  # recorded iteration k_values - 1
        return f"diffusion step t = {t} (LSD-EBM only), Langevin iteration k = {kv} of 0..{last}"

    def _update_explain(self) -> None:
        parts = [explain("generate")]
        where = self.position_text()
        if where:
            parts.insert(0, f"Now showing: {where}.")
        parts += [explain(m) for m in METHODS if self.use[m].isChecked()]
        self.explain.setPlainText("\n\n".join(parts))
        if self.frames:  # the canvas says the same
            methods = " | ".join(METHOD_LABELS[m].split(" (")[0] for m in METHODS if m in self.frames)
            show_canvas_note(self.viewer, f"{methods} · {where.replace(' (LSD-EBM only)', '')} · decoded current "
                             "latent (EBM: the pixels)")
