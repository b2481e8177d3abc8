"""Energy-landscape dock: the conditional energy of eq. (2) on the 2-D toy, with particles moving in k.

Layers (world axes t, k, z2, z1 -- the sliders in the order (t, k) as in every view; "up" is +z2):
* ``landscape`` image (t, k, z2, z1): U(y) of the focused particle at each step t (the same for
  every k), rescaled per t to [0, 1] between its minimum and its 95th percentile (dark = low
  energy), with napari's colour bar on the canvas and a labelled one in the dock;
* ``contours`` image (t, k, z2, z1): iso-lines of the same picture (10 levels), drawn in white;
* ``particles`` points (t, k, z2, z1): every particle at every Langevin iteration (eq. 3; k = 0
  is where the walk starts);
* ``focused particle`` and ``z_{t+1}``: the particle whose landscape is drawn and its centre;
* ``toy data``: samples of the mixture the energy was trained on (hidden at first).
The canvas axes are labelled z1 (right) and z2 (up). Toggles draw the learned E(y, t) alone or
the quadratic term alone.
"""
from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QCheckBox, QFormLayout, QLabel, QPushButton, QSpinBox, QTextBrowser, QVBoxLayout, QWidget

from lsdebm.methods import RunSettings
from lsdebm.teach.checkpoints import load_teach
from lsdebm.teach.explain import explain, landscape_text
from lsdebm.teach.toy import ParticleRun, energy_grid, mixture_of_gaussians, run_particles
from napari_lsdebm._ui.docking import CloseWatcher, dock_viewer
from napari_lsdebm._ui.gl_context import keep_canvas_current
from napari_lsdebm._ui.jobs import Outcome, start_job
from napari_lsdebm._ui.legends import ColourBar, canvas_overlay, show_canvas_note, show_layer_colorbar
from napari_lsdebm._ui.trajectory_layer import label_axes, leading_axes, set_leading

EXTENT = (-2.5, 2.5, -2.5, 2.5)
GRID = 121
LEVELS = np.linspace(0.05, 0.95, 10)
ENERGY_LABEL = "energy U of eq. (2), rescaled per t (0 = minimum, 1 = 95th percentile; a.u.)"


def display_energy(values: np.ndarray) -> np.ndarray:
    """U rescaled to [0, 1] between its minimum and 95th percentile (so a steep bowl does not hide detail)."""
    lo, hi = float(values.min()), float(np.quantile(values, 0.95))
    return np.clip((values - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def contour_image(shown: np.ndarray, levels=LEVELS) -> np.ndarray:
    """Iso-lines of ``shown`` (..., rows, cols) as a {0, 1} float image: pixels where a level is crossed."""
    lines = np.zeros(shown.shape, np.float32)
    for level in levels:
        above = shown >= level
        lines[..., 1:, :] += above[..., 1:, :] != above[..., :-1, :]
        lines[..., :, 1:] += above[..., :, 1:] != above[..., :, :-1]
    return np.minimum(lines, 1.0)


def to_world(points: np.ndarray) -> np.ndarray:
    """Latent (z1, z2) -> napari (row, col) = (-z2, z1), so +z2 points up on screen."""
    return np.stack([-points[..., 1], points[..., 0]], axis=-1)


class LandscapeWidget(QWidget):
    """Draw eq. (2) at the current t for one particle and let k move every particle (eqs. 3-4)."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer = dock_viewer(napari_viewer)  # not napari's plugin proxy (docking)
        keep_canvas_current(napari_viewer)  # removed layers' GL objects die in the canvas's context
        self.model = None
        self.run: ParticleRun | None = None
        self.worker = None
        self.n = QSpinBox(minimum=1, maximum=512, value=64)
        self.seed = QSpinBox(minimum=0, maximum=2 ** 31 - 1, value=0)
        self.focus = QSpinBox(minimum=0, maximum=63, value=0)
        self.focus.setToolTip("the particle whose z_{t+1} centres the quadratic bowl")
        self.learned = QCheckBox("learned energy E(y, t)", checked=True)
        self.quadratic = QCheckBox("quadratic ||y - z_{t+1}||² / (2σ²_{t+1})", checked=True)
        self.run_button = QPushButton("Run particles (Algorithm 3 on the toy)")
        self.status = QLabel("Loads the bundled toy energy, then runs the particles.")
        self.status.setWordWrap(True)
        self.explain = QTextBrowser()
        self.explain.setMinimumWidth(220)
        self.colour_bar = ColourBar()  # shown with the first landscape
        form = QFormLayout()
        form.addRow("particles", self.n)
        form.addRow("seed", self.seed)
        form.addRow("focused particle", self.focus)
        form.addRow(self.learned)
        form.addRow(self.quadratic)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.status)
        layout.addWidget(self.colour_bar)
        layout.addWidget(QLabel("Explain"))
        layout.addWidget(self.explain, 1)
        self.run_button.clicked.connect(self.start)
        self.focus.valueChanged.connect(self.redraw)
        self.learned.toggled.connect(lambda on: self._toggled(self.learned, self.quadratic, on))
        self.quadratic.toggled.connect(lambda on: self._toggled(self.quadratic, self.learned, on))
        self.viewer.dims.events.current_step.connect(self._update_explain)
        self._update_explain()
        self.closed = False  # the dock was closed: particles still running are not drawn
        self._close_watcher = CloseWatcher(self, self._on_close)

    def _on_close(self) -> None:
        """The dock was closed: stop following the sliders (it wrote the canvas note over other docks' notes)."""
        self.closed = True
        self.viewer.dims.events.current_step.disconnect(self._update_explain)

    # ------------------------------------------------------------------ running
    def terms(self) -> str:
        if self.learned.isChecked() and self.quadratic.isChecked():
            return "both"
        return "learned" if self.learned.isChecked() else "quadratic"

    def _toggled(self, box: QCheckBox, other: QCheckBox, on: bool) -> None:
        if not on and not other.isChecked():  # at least one term is always drawn
            other.setChecked(True)
        self.redraw()

    def start(self) -> None:
        """Load the toy (once) and run the particles in a worker thread."""
        n, seed, model = self.n.value(), self.seed.value(), self.model

        def work(job):  # on the worker thread
            toy = model or load_teach("toy", expect_kind="toy").model
            return toy, run_particles(toy, n, RunSettings(seed=seed))

        self.run_button.setEnabled(False)
        self.status.setText("running the reverse chain ...")
        self.worker = start_job(work, self._finished, what="toy particles")

    def _finished(self, outcome: Outcome) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        if outcome.status != "done" or self.closed:
            self.status.setText(f"error: {outcome.message}" if outcome.status == "error" else "")
            return
        self.model, self.run = outcome.output
        self.focus.setMaximum(self.run.y.shape[2] - 1)
        self.show_run()
        self.status.setText("Drag t (diffusion step) and k (Langevin iteration, from 0). "
                            "t = 0, last k: generated points.")

    # ------------------------------------------------------------------ layers
    def _set_layer(self, name: str, kind: str, data, **kwargs):
        """Add layer ``name`` (``image`` or ``points``), or replace the data of the one already there."""
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            return layer
        add = {"image": self.viewer.add_image, "points": self.viewer.add_points}
        return add[kind](data, name=name, **kwargs)

    def show_run(self) -> None:
        run = self.run
        T, K1, n, _ = run.y.shape
        t, k, i = np.meshgrid(np.arange(T), np.arange(K1), np.arange(n), indexing="ij")
        pts = np.concatenate([t.reshape(-1, 1), k.reshape(-1, 1), to_world(run.y).reshape(-1, 2)], axis=1)
        self.redraw()
        self._set_layer("toy data", "points", to_world(mixture_of_gaussians(300, seed=1)), size=0.04,
                        face_color="white", opacity=0.5, visible=False)
        self._set_layer("particles", "points", pts, size=0.07, face_color="orange", border_width=0)
        layers = self.viewer.layers
        for name in ("focused particle", "z_{t+1}"):  # drawn above the other particles
            layers.move(layers.index(name), len(layers))
        label_axes(self.viewer, ("t", "k", "z2", "z1"))
        set_leading(self.viewer, T - 1, 0)
        axes = canvas_overlay(self.viewer, "axes")  # z1 to the right, z2 up, labelled on the canvas
        axes.labels, axes.visible = True, True
        self.viewer.reset_view()

    def landscape_values(self) -> np.ndarray:
        """(T, GRID, GRID) energies of the focused particle, rows top-to-bottom = z2 high-to-low."""
        run, i = self.run, self.focus.value()
        return np.stack([energy_grid(self.model, run.z_next[t, i], t, float(run.sigma[t]), self.terms(),
                                     EXTENT, GRID).values[::-1] for t in range(run.y.shape[0])])

    def redraw(self, *_) -> None:
        """Recompute the landscape, contours and focused-particle layers for the current toggles."""
        if self.run is None:
            return
        run, i = self.run, min(self.focus.value(), self.run.y.shape[2] - 1)
        T, K1 = run.y.shape[:2]
        shown = np.stack([display_energy(v) for v in self.landscape_values()])
        step = (EXTENT[1] - EXTENT[0]) / (GRID - 1)
        place = {"scale": (1, 1, step, step), "translate": (0, 0, -EXTENT[3], EXTENT[0])}
        every_k = (T, K1, GRID, GRID)  # the landscape of step t does not change with k: a broadcast view
        landscape = self._set_layer("landscape", "image", np.broadcast_to(shown[:, None], every_k),
                                    colormap="viridis", contrast_limits=(0.0, 1.0), **place)
        show_layer_colorbar(landscape)
        self.colour_bar.show_bar("viridis", 0.0, 1.0, ENERGY_LABEL)
        lines = np.broadcast_to(contour_image(shown)[:, None], every_k)
        self._set_layer("contours", "image", lines, colormap="gray", contrast_limits=(0.0, 1.0),
                        blending="additive", opacity=0.6, **place)
        # the ring and the focused particle exist at every (t, k); rows k * T + t, so row t is (t, k = 0)
        k, t = np.meshgrid(np.arange(K1), np.arange(T), indexing="ij")
        centre = np.column_stack([t.ravel(), k.ravel(), to_world(run.z_next[t.ravel(), i])])
        self._set_layer("z_{t+1}", "points", centre, size=0.18, face_color="transparent", border_color="white",
                        border_width=0.2, symbol="ring")
        path = np.column_stack([t.ravel(), k.ravel(), to_world(run.y[t.ravel(), k.ravel(), i])])
        self._set_layer("focused particle", "points", path, size=0.14, face_color="red", border_width=0)
        self._update_explain()

    def _update_explain(self, *_) -> None:
        if self.run is None:
            self.explain.setPlainText(explain("landscape"))
            return
        step = self.viewer.dims.current_step
        T, K1 = self.run.y.shape[:2]
        ta, ka = leading_axes(self.viewer)
        t, k = (int(step[ta]), int(step[ka])) if len(step) >= 4 else (T - 1, 0)
        t = min(t, T - 1)
        self.explain.setPlainText(landscape_text(t, T, float(self.run.sigma[t]), self.terms(), min(k, K1 - 1), K1 - 1))
        show_canvas_note(self.viewer, f"2-D toy · reverse t={t} · k={min(k, K1 - 1)}/{K1 - 1} · colour: "
                                      f"{self.terms()} energy of eq. (2), focused particle {self.focus.value()}")
