"""The LSD-EBM explorer dock: load a checkpoint, run it on a layer, scrub the recorded trajectory.

A run (:func:`lsdebm.explore.record_run`, Algorithm 2 for LSD-EBM) happens on a worker thread with a progress
bar, Cancel and a throttled live preview. The result is a Labels layer (the final reconstruction) and a lazily
decoded (t, k, Z, Y, X) Image layer that napari's sliders scrub; :class:`TrajectoryPlots` beside the sliders
follows them and moves them when clicked. Settings scroll above a footer (Run, Cancel, progress, status); the
plots dock comes with the first trajectory and goes with the explorer; a new run replaces the last one's layers.
"""
from __future__ import annotations

from napari.layers import Image, Labels
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QWidget,
)

from lsdebm.data.validate import require_one_structure
from lsdebm.errors import LsdebmError
from lsdebm.explore import TrajectoryVolumes, record_run, run_metadata
from lsdebm.explore.decode_cache import DecodeCache
from lsdebm.explore.record import observe
from lsdebm.explore.run_input import RunInput, run_input
from lsdebm.explore.vocabulary import result_text
from lsdebm.runtime.device import resolve_device
from napari_lsdebm._ui.capture import is_shown
from napari_lsdebm._ui.checkpoint_panel import KIND_NAMES, CheckpointPanel
from napari_lsdebm._ui.docking import CloseWatcher, close_explorer, dock_below_canvas, dock_viewer, scroll_with_footer
from napari_lsdebm._ui.gl_context import keep_canvas_current
from napari_lsdebm._ui.jobs import Outcome, error_text, start_job
from napari_lsdebm._ui.legends import OwnedNote
from napari_lsdebm._ui.noise_panel import NoisePanel, explorer_note, generation_context, start_generation
from napari_lsdebm._ui.pickers import LayerCombo, affine_of
from napari_lsdebm._ui.placement import model_placement
from napari_lsdebm._ui.plots import TrajectoryPlots
from napari_lsdebm._ui.preview import PREVIEW_KEY, LivePreview
from napari_lsdebm._ui.results import add_result_layers, preload_result
from napari_lsdebm._ui.run_layers import RunLayers
from napari_lsdebm._ui.run_panel import RunPanel
from napari_lsdebm._ui.surface_layer import RENDER_MODES
from napari_lsdebm._ui.trajectory_layer import MESSAGE_KEY, FrameRefresher, real_layer, slider_axes, trajectory_of
from napari_lsdebm._ui.trajectory_surface import TrajectorySurface
from napari_lsdebm.io.trajectory import write_trajectory


class ExplorerWidget(QWidget):
    """Dock widget of the explorer; ``napari_viewer`` is injected by napari."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer = dock_viewer(napari_viewer)  # not napari's plugin proxy (docking)
        self.cache = DecodeCache(512 * 2 ** 20)
        self.layer = None  # the trajectory layer the plots follow
        self.refreshers: dict[int, FrameRefresher] = {}
        self.surfaces: dict[int, TrajectorySurface] = {}  # mesh rendering of each trajectory layer
        self.worker = None  # the running Job
        self.closed = False  # the dock or the viewer was closed: a run that still ends shows no result
        self.preview = LivePreview(self.viewer)
        self.checkpoint_panel = CheckpointPanel()
        self.run_panel = RunPanel()
        self.noise_panel = NoisePanel()  # teaching in 3D: generate from noise, full depth
        self.plots = TrajectoryPlots()
        self.plots_dock = None  # the napari dock of the plots, shown with the first trajectory
        self.run_layers = RunLayers(self.viewer)
        self._close_watcher = CloseWatcher(self, lambda: close_explorer(self))  # closing it closes the plots
        self._build()
        self.checkpoint_panel.loaded.connect(self.run_panel.use_defaults)
        self.run_panel.run_button.clicked.connect(self.run)
        self.run_panel.cancel_button.clicked.connect(self.cancel)
        self.noise_panel.generate_button.clicked.connect(self.generate)
        self.plots.on_pick = self._on_pick
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.layers.events.removed.connect(self._on_removed)
        keep_canvas_current(self.viewer)  # a removed hidden trajectory segfaulted Mesa (see gl_context)
        self.viewer.layers.selection.events.active.connect(self._on_active)
        self.viewer.dims.events.current_step.connect(self._on_dims)
        self.note = OwnedNote(napari_viewer)
        # "3D view" ticked means the canvas is in 3D: apply it now, and follow napari's own 2D/3D button
        self.viewer.dims.ndisplay = 3 if self.view3d_box.isChecked() else 2
        self.viewer.dims.events.ndisplay.connect(self._on_ndisplay)
        for layer in list(self.viewer.layers):
            self._on_inserted(type("E", (), {"value": layer})())
        window = getattr(self.viewer, "window", None)
        if window is not None and hasattr(window, "add_dock_widget"):
            self.plots_dock = dock_below_canvas(window, self.plots, "LSD-EBM plots")
            self.plots_dock.setVisible(self.layer is not None)  # no empty plot panel before a run

    def _build(self) -> None:
        self.input_combo = LayerCombo(self.viewer, (Image, Labels), accept=self._is_input)  # follows renames
        self.label_spin = QSpinBox()
        self.label_spin.setRange(0, 100000)
        self.label_spin.setToolTip("Label to explore (0: the whole mask; a map of several labels needs one)")
        self.sample_button = QPushButton("Open phantom sample")
        self.sample_button.clicked.connect(self.open_sample)
        self.clean_box = QCheckBox("predicted clean z_t / ā_t")
        self.clean_box.setToolTip("Show the predicted clean latent instead of the noisy one at each frame")
        self.clean_box.toggled.connect(self._display_changed)
        self.repeat_spin = QSpinBox()
        self.repeat_spin.valueChanged.connect(self._display_changed)
        self.cache_spin = QSpinBox()
        self.cache_spin.setRange(16, 1024)
        self.cache_spin.setValue(512)
        self.cache_spin.setSuffix(" MB")
        self.cache_spin.valueChanged.connect(lambda mb: setattr(self.cache, "max_bytes", mb * 2 ** 20))
        self.view3d_box = QCheckBox("3D view (off: slices)")
        self.view3d_box.setChecked(True)
        self.view3d_box.toggled.connect(lambda on: setattr(self.viewer.dims, "ndisplay", 3 if on else 2))
        self.render_combo = QComboBox()
        self.render_combo.addItems(RENDER_MODES)
        self.render_combo.setToolTip("3D drawing of decoded frames: mesh (iso-surface triangles, fast everywhere) "
                                     "or volume (iso ray casting, slow in software OpenGL)")
        self.render_combo.currentTextChanged.connect(self._render_changed)
        self.save_button = QPushButton("Save trajectory…")
        self.save_button.clicked.connect(lambda: self.save_trajectory())
        self.keep_box = QCheckBox("Keep previous runs")
        self.keep_box.setToolTip("Off: a new run replaces the previous run's layers")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        for box in (self.input_combo, self.render_combo, self.label_spin, self.repeat_spin, self.cache_spin):
            box.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self._build_layout()

    def _build_layout(self) -> None:
        """Settings in a vertical-only scroll area; Run/Cancel, progress and status in a footer below it."""
        inputs = QFormLayout()
        inputs.addRow("layer", self.input_combo)
        inputs.addRow("label", self.label_spin)
        inputs.addRow("", self.sample_button)
        display = QFormLayout()
        display.addRow("", self.clean_box)
        display.addRow("repeat", self.repeat_spin)
        display.addRow("decode cache", self.cache_spin)
        display.addRow("", self.view3d_box)
        display.addRow("render", self.render_combo)
        row = QHBoxLayout()
        row.addWidget(self.save_button)
        display.addRow(row)
        groups = [("Checkpoint", [self.checkpoint_panel]), ("Input", [inputs]),
                  ("Run", [self.run_panel, self.keep_box, self.noise_panel]), ("Display", [display])]
        self.status.setContentsMargins(4, 0, 4, 4)
        scroll_with_footer(self, groups, [self.run_panel.footer, self.status])
        self.setMinimumWidth(360)

    # input -----------------------------------------------------------------------------------
    def open_sample(self) -> None:
        """Add the phantom pair sample and choose its thick-slice mask as input."""
        layers = self.viewer.open_sample("napari-lsdebm", "phantom_pair")
        lq = [layer for layer in layers if layer.name.startswith("LQ")]
        if lq:
            self.input_combo.set_layer(lq[0])

    def _is_input(self, layer) -> bool:
        return layer.ndim == 3 and trajectory_of(layer) is None and PREVIEW_KEY not in layer.metadata

    # running ---------------------------------------------------------------------------------
    def run(self) -> None:
        """Start a run with the current settings (errors are shown in the status line)."""
        try:
            self._start()
        except LsdebmError as exc:
            self._say(str(exc), error=True)

    def _start(self) -> None:
        if self.worker is not None:
            raise LsdebmError("a run is already in progress")
        source = self.input_combo.layer()
        if source is None or not self._is_input(source):
            raise LsdebmError("choose an input layer (a 3D Labels or Image layer), or open the phantom sample")
        ckpt, stage1 = self.checkpoint_panel.for_run(self.run_panel)
        device = resolve_device(self.run_panel.device.currentText())
        for c in filter(None, (ckpt, stage1)):
            c.model.to(device)
        m, label, what = ckpt.config.model, self.label_spin.value() or None, f"layer '{source.name}'"
        require_one_structure(source.data, label, what, "explore")  # refused at once, in the status line
        data, affine = source.data, affine_of(source)
        run = dict(label=label, ckpt=ckpt, stage1=stage1, device=device, source=source,
                   settings=self.noise_panel.run_settings(ckpt, self.run_panel.settings()),
                   every=self.run_panel.every.value())
        self.run_panel.set_running(True)  # naming, tilted-slab search, crop: 0.7-2 s in a whole-body map
        self._say(f"preparing {what}…")
        self.worker = start_job(lambda job: run_input(data, affine, m.grid, m.spacing, label, m, what),
                                lambda outcome: self._prepared(outcome, run), what="run", failed="run failed")

    def _prepared(self, outcome: Outcome, run: dict) -> None:
        job, self.worker = self.worker, None
        if outcome.status == "done" and job is not None and job.cancelled():  # Cancel while preparing
            outcome = Outcome("cancelled", message="Run cancelled.")
        if outcome.status == "done":
            try:
                return self._begin(outcome.output, **run)
            except LsdebmError as exc:
                outcome = Outcome("error", message=str(exc))
        self.run_panel.set_running(False)
        self._say(outcome.message, error=outcome.status == "error")

    def _begin(self, given: RunInput, label, ckpt, stage1, device, source, settings, every) -> None:
        """Start the run on the prepared input (GUI thread): live preview, layers hidden, the worker."""
        x, crop, data, affine, m = given.x, given.crop, given.data, given.affine, ckpt.config.model  # tilted: slab grid
        model_affine = crop.crop_affine if crop else affine
        meta = run_metadata(ckpt, settings, stage1, every, input_name=source.name, affine=model_affine.tolist())
        self._run_context = {"ckpt": ckpt, "source": source, "crop": crop, "affine": model_affine, "note": given.note(),
                             "placement": model_placement(source, model_affine, m.spacing)}
        self.run_layers.begin()  # hides the previous results under the live preview; Cancel restores
        self.preview.start(ckpt.model, m.grid, m.spacing, self._run_context["placement"], self._display()[1])
        source.visible = False
        what = source.name + (f", {given.named}" if given.named else "")  # the vertebra: "label 22 (L3, VerSe)"
        self._say(f"running {KIND_NAMES[ckpt.kind]} on {what} ({device}){given.note()}…")
        ctx = self._run_context
        preload = preload_result(ctx, self.cache, self._display() == (3, "mesh"))

        def work(job):  # in the worker thread: the run, its result on the input's grid, its final frame decoded
            output = yield from record_run(ckpt, x, settings, stage1, every, meta, job.cancel_event,
                                           observe(ckpt, data, affine, crop, label, settings))
            if crop is not None:
                ctx["pasted"] = given.result(output, ckpt.model)
            return preload(output)

        self.worker = start_job(work, self._on_outcome, self._on_progress, throttle=0.1,
                                keep=lambda p: p.done >= p.total, what="run", failed="run failed")

    def generate(self) -> None:
        """Algorithm 3 in 3D: generate from z_T ~ N(0, I) and record the whole reverse chain."""
        try:
            if self.worker is not None:
                raise LsdebmError("a run is already in progress")
            ckpt = self.checkpoint_panel.for_run(self.run_panel)[0]
            ckpt.model.to(resolve_device(self.run_panel.device.currentText()))
            ctx = self._generation_context = generation_context(ckpt)
            self.worker = start_generation(ckpt, self.run_panel.settings(), self.run_panel.every.value(),
                                           self._on_generated, self.run_panel.show_progress,
                                           preload_result(ctx, self.cache, self._display() == (3, "mesh")))
        except LsdebmError as exc:
            self._say(str(exc), error=True)
            return
        self.run_panel.set_running(True)
        self._say(f"generating with {KIND_NAMES[ckpt.kind]} from noise z_T ~ N(0, I)…")

    def _on_generated(self, outcome: Outcome) -> None:
        self.worker = None
        self.run_panel.set_running(False)
        if outcome.status != "done" or self.closed:
            self._say(outcome.message, error=outcome.status == "error")
            return
        self.show_result(outcome.output, self._generation_context)

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self._say("cancelling…")

    def _on_progress(self, p) -> None:
        self.run_panel.show_progress(p)
        self.preview.update(p.payload.z)

    def _on_outcome(self, outcome: Outcome) -> None:
        self.worker = None
        if self.closed:  # the run ended after the dock was closed, before it saw the cancel
            outcome = Outcome("cancelled", message="Run cancelled.")
        self.run_panel.set_running(False)
        if outcome.status != "done":
            self.run_layers.restore(self._run_context["source"])  # the layers as they were when Run was clicked
            self._say(outcome.message, error=outcome.status == "error")
            # removing a layer costs napari a full gc.collect (~0.5 s here): do it after the
            # controls and the status line have shown that the run has stopped
            QTimer.singleShot(0, self.preview.stop)
            return
        self._leftover = self.preview.stop(remove=False)  # removed with the previous run's layers: one cleanup
        self.show_result(outcome.output)

    # results ---------------------------------------------------------------------------------
    def show_result(self, output, context: dict | None = None) -> None:
        """Add the reconstruction (Labels) and the (t, k) trajectory layer, switch to 3D."""
        ctx = context or self._run_context
        leftover, self._leftover = getattr(self, "_leftover", None), None
        self.run_layers.replace(self.keep_box.isChecked(), [leftover] if leftover is not None else [])
        before = list(self.viewer.layers)
        add_result_layers(self.viewer, output, ctx, self.cache, *self._display())
        self.run_layers.record(before)
        self._say(result_text(KIND_NAMES[ctx["ckpt"].kind], output.trajectory, output.seconds) + ctx.get("note", ""))

    def adopt(self, layer) -> None:
        """Make ``layer`` (a trajectory) the one the plots and display controls act on."""
        self.layer = layer = real_layer(layer)
        traj = trajectory_of(layer)
        if isinstance(layer.data, TrajectoryVolumes) and id(layer) not in self.refreshers:
            layer.data.cache = self.cache
            self.refreshers[id(layer)] = FrameRefresher(layer)
            self.surfaces[id(layer)] = TrajectorySurface(self.viewer, layer, self.refreshers[id(layer)],
                                                         self.render_combo.currentText())
        self.repeat_spin.setRange(0, traj.repeats - 1)
        if self.plots_dock is not None:  # first shown (and sized), then drawn
            self.plots_dock.setVisible(True)
        self.plots.set_trajectory(traj, layer.metadata.get(MESSAGE_KEY, ""))
        if layer.metadata.get(MESSAGE_KEY):
            self._say(layer.metadata[MESSAGE_KEY], error=True)
        self._on_dims()
        QTimer.singleShot(0, self._on_dims)  # again once napari has finished adding it (sliders settled)

    def position(self) -> tuple[int, int] | None:
        """Current (frame s, k index) of the followed trajectory layer."""
        if self.layer is None or self.layer not in self.viewer.layers:
            return None
        if self.viewer.dims.ndim < self.layer.ndim:  # napari has not grown the sliders for it yet
            return None
        axes = slider_axes(self.viewer, self.layer)
        step = self.viewer.dims.current_step
        return (int(step[axes[0]]), int(step[axes[1]])) if axes else None

    def _on_dims(self, event=None) -> None:
        pos = self.position()
        if pos is not None:
            self.plots.set_position(*pos)
        self._update_note()

    def _update_note(self) -> None:
        """The canvas note: method, diffusion step t, Langevin iteration k and which latent is decoded."""
        pos = self.position()  # written while the trajectory is drawn; never over another dock's note
        traj = trajectory_of(self.layer) if pos is not None and is_shown(self.viewer, self.layer) else None
        self.note.show("" if traj is None else explorer_note(traj, *pos, self.clean_box.isChecked()))

    def _display(self) -> tuple[int, str]:  # (ndisplay, how 3D frames are drawn): (3, mesh | volume) or (2, volume)
        return (3, self.render_combo.currentText()) if self.view3d_box.isChecked() else (2, "volume")

    def _on_ndisplay(self, event=None) -> None:
        """Keep "3D view" ticked exactly while the canvas is in 3D."""
        self.view3d_box.setChecked(self.viewer.dims.ndisplay == 3)

    def _on_pick(self, axis: str, value: int) -> None:
        if self.layer is not None:
            axes = slider_axes(self.viewer, self.layer)
            self.viewer.dims.set_current_step(axes[0 if axis == "t" else 1], value)

    def _display_changed(self) -> None:
        if self.layer is not None and isinstance(self.layer.data, TrajectoryVolumes):
            self.layer.data.clean = self.clean_box.isChecked()
            self.layer.data.repeat = self.repeat_spin.value()
            self.layer.refresh()
            if id(self.layer) in self.surfaces:
                self.surfaces[id(self.layer)].update()
        self._update_note()

    def _render_changed(self, render: str) -> None:
        for surface in self.surfaces.values():
            surface.set_render(render)

    def save_trajectory(self, path: str | None = None) -> str | None:
        """Write the followed trajectory as .npz (asks for a file name when ``path`` is None)."""
        if self.layer is None:
            self._say("nothing to save: run the explorer first", error=True)
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save trajectory", "trajectory.npz", "Trajectory (*.npz)")
            if not path:
                return None
        try:
            written = write_trajectory(path, None, {"name": self.layer.name, "metadata": self.layer.metadata})[0]
        except Exception as exc:  # noqa: BLE001 - an unwritable place: one line in the status, as Export says it
            self._say(f"Not saved: {error_text(exc)}", error=True)
            return None
        self._say(f"saved {written}")
        return written

    # layer list ------------------------------------------------------------------------------
    def _on_inserted(self, event) -> None:
        event.value.events.visible.connect(self._update_note)  # hiding or showing the trajectory (or its mesh)
        if trajectory_of(event.value) is not None:
            self.adopt(event.value)

    def _on_removed(self, event) -> None:
        refresher = self.refreshers.pop(id(real_layer(event.value)), None)
        if refresher is not None:
            refresher.detach()
        surface = self.surfaces.pop(id(real_layer(event.value)), None)
        if surface is not None:
            surface.detach()
        if real_layer(event.value) is self.layer:
            self.layer = None
            self.plots.set_trajectory(None)
            self._update_note()

    def _on_active(self, event=None) -> None:
        active = real_layer(self.viewer.layers.selection.active)
        if (active is not None and active is not self.layer and active in self.viewer.layers
                and trajectory_of(active) is not None):
            self.adopt(active)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #ff6b6b" if error else "")
        self.status.setText(text)
