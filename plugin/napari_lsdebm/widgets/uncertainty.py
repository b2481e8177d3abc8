"""Uncertainty: N repeated stochastic runs give a mean-probability layer and a per-voxel variance layer."""
from __future__ import annotations

from dataclasses import asdict

from napari.layers import Image, Labels
from napari.utils.colormaps import Colormap
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from lsdebm.errors import InputError
from lsdebm.methods import RunSettings
from lsdebm.provenance import checkpoint_record, make_provenance
from lsdebm.review.compare import LABELS, METHODS, compared_structure, structure_box
from lsdebm.review.uncertainty import input_grid_uncertainty
from lsdebm.runtime.loading import load_models
from napari_lsdebm._ui.docking import CloseWatcher, dock_viewer
from napari_lsdebm._ui.gl_context import keep_canvas_current
from napari_lsdebm._ui.jobs import Outcome, start_job
from napari_lsdebm._ui.legends import ColourBar, show_layer_colorbar
from napari_lsdebm._ui.pickers import LayerCombo, PathRow, affine_of, boxed_geometry, geometry_kwargs, put_layer
from napari_lsdebm._ui.roles import RESULT, AutoPick, pick_input, role_metadata
from napari_lsdebm._ui.surface_layer import RENDER_MODES, add_volume_layer, hide_under_surface


def load_for_uncertainty(method: str, path: str | None, use_reconnet: bool, reconnet_path: str | None):
    """(method checkpoint, ReconNet checkpoint or None) through the one loader
    (:func:`lsdebm.runtime.loading.load_models`: bundled defaults for empty paths, same-frame check)."""
    models = load_models(method, path or None, reconnet=use_reconnet, reconnet_checkpoint=reconnet_path or None)
    return models.method, models.reconnet


VARIANCE_LABEL = "per-voxel variance of p(x|z) over the N runs (probability², no unit)"
# The mean surface's colours: most of it has a variance near zero, which magma draws black, on a black canvas.
# Bone grey (settled) -> yellow -> orange -> red (the runs disagree).
SURFACE_VARIANCE_COLORS = [(0.80, 0.80, 0.76, 1), (0.98, 0.82, 0.38, 1), (0.95, 0.45, 0.15, 1), (0.85, 0.08, 0.12, 1)]


def surface_variance_colormaps():
    """The mean surface's colormap for napari and the same colours for the dock's matplotlib colour bar."""
    from matplotlib.colors import LinearSegmentedColormap

    return (Colormap(SURFACE_VARIANCE_COLORS, name="lsdebm surface variance"),
            LinearSegmentedColormap.from_list("lsdebm surface variance", [c[:3] for c in SURFACE_VARIANCE_COLORS]))


class UncertaintyWidget(QWidget):
    """Dock widget: repeated stochastic reconstructions -> mean probability and variance layers."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer = dock_viewer(napari_viewer)  # not napari's plugin proxy (docking)
        keep_canvas_current(napari_viewer)  # removed layers' GL objects die in the canvas's context
        self.worker = None
        self.input_combo = LayerCombo(napari_viewer, (Labels, Image))
        self.autopick = AutoPick(napari_viewer, self.input_combo, pick_input)
        self.method = QComboBox()
        for kind in reversed(METHODS):
            self.method.addItem(LABELS[kind], kind)
        self.path = PathRow("bundled <method>-default")
        self.use_reconnet = QCheckBox("ReconNet first stage", checked=True)
        self.reconnet_path = PathRow("bundled reconnet-default")
        self.label_spin = QSpinBox(maximum=100000, specialValueText="the whole mask")
        self.label_spin.setToolTip("The structure of a label map to run on (e.g. 22 for VerSe's L3)")
        self.n = QSpinBox(minimum=2, maximum=1000, value=8)
        self.seed = QSpinBox(maximum=2 ** 31 - 1)
        self.sample_encoder = QCheckBox("sample z0 ~ q(z0|x) (else the posterior mean)", checked=True)
        self.render = QComboBox()
        self.render.addItems(RENDER_MODES)  # mesh first: the default (fast in software OpenGL too)
        self.render.setToolTip("mesh: also the p = 0.5 surface of the mean, coloured by variance, drawn in 3D "
                               "instead of the volumes (fast in software OpenGL)")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel", enabled=False)
        self.progress = QProgressBar()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.colour_bar = ColourBar()  # the variance scale, shown with the first result
        form = QFormLayout()
        form.addRow("input", self.input_combo)
        form.addRow("label", self.label_spin)
        form.addRow("method", self.method)
        form.addRow("checkpoint", self.path)
        form.addRow(self.use_reconnet)
        form.addRow("ReconNet checkpoint", self.reconnet_path)
        form.addRow("runs N", self.n)
        form.addRow("seed", self.seed)
        form.addRow(self.sample_encoder)
        form.addRow("render 3D as", self.render)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.colour_bar)
        layout.addStretch(1)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.closed = False  # the dock (or the viewer) was closed: runs still ending add no layers
        self._close_watcher = CloseWatcher(self, self._on_close)

    def _on_close(self) -> None:
        """The dock or the viewer was closed: stop the runs after the current batch; their maps are not shown."""
        self.closed = True
        if self.worker is not None:
            self.worker.cancel()

    def run(self) -> None:
        source = self.input_combo.layer()
        if source is None:
            self.status.setText("Choose an input layer.")
            return
        method, n = self.method.currentData(), self.n.value()
        settings = RunSettings(seed=self.seed.value(), use_mean=not self.sample_encoder.isChecked())
        try:  # one structure: a label of a label map, or the whole mask
            affine = affine_of(source)  # refuses a 2D layer
            if source.ndim != 3:
                raise InputError(f"layer {source.name!r} is {source.ndim}D (shape {tuple(source.data.shape)}); "
                                 "expected a 3D mask or label map")
            x, _ = compared_structure(source.data, self.label_spin.value() or None, f"layer '{source.name}'")
        except InputError as exc:
            self.status.setText(str(exc))
            return
        paths = (self.path.value(), self.use_reconnet.isChecked(), self.reconnet_path.value())

        def work(job):  # on the worker thread; a cancel stops after the current batch, keeping the runs done
            ckpt, stage1 = load_for_uncertainty(method, *paths)
            # on the box the runs can touch (a vertebra of a whole-body map: not two body-sized float maps)
            cut, _, cut_affine, box = structure_box(x, None, affine, {method: ckpt})
            u = input_grid_uncertainty(ckpt.model, cut, cut_affine, n, settings, stage1.model if stage1 else None,
                                       progress=lambda done, total: job.report((done, total)),
                                       should_stop=job.cancelled)
            records = ([checkpoint_record(stage1, "reconnet")] if stage1 else []) + [checkpoint_record(ckpt, "method")]
            prov = make_provenance(records, settings.seed, {**asdict(settings), "runs": u.n},
                                   extra={"method": method, "uncertainty": "mean and variance of p(x|z) over runs"})
            return u, prov, boxed_geometry(source, box, cut_affine)

        self.progress.setRange(0, n)
        self.progress.setValue(0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"{n} runs of {LABELS[method]}…")
        self.worker = start_job(work, lambda outcome: self._finished(outcome, source, method, n),
                                lambda done_total: self._on_progress(*done_total), what="uncertainty")

    def _show(self, result, source, method, requested: int | None = None) -> None:
        u, prov, at = result  # ``at``: the geometry of the box the runs ran on, within ``source``'s grid
        label = f"{LABELS[method]}, N={u.n}"
        vmax = max(float(u.variance.max()), 1e-6)
        put_layer(self.viewer, "image", u.mean, f"mean probability ({label})", colormap="gray",
                  contrast_limits=(0.0, 1.0), **geometry_kwargs(at, prov, **role_metadata(RESULT)))
        variance = put_layer(self.viewer, "image", u.variance, f"variance ({label})", colormap="magma",
                             contrast_limits=(0.0, vmax), blending="additive", **geometry_kwargs(at, prov))
        show_layer_colorbar(variance)  # napari's colour bar on the canvas, values of the variance layer
        self.colour_bar.show_bar("magma", 0.0, vmax, VARIANCE_LABEL)
        hidden = ""
        if self.render.currentText() == "mesh":
            self._show_surface(u, label, vmax, at, prov)
            hidden = hide_under_surface(source)  # in 3D the input's volume would hide the surface inside it
        else:  # the volumes, also when a mesh run of the same name had hidden them; not its stale surface
            for name in (f"mean probability ({label})", f"variance ({label})"):
                self.viewer.layers[name].visible = True
            if f"mean surface ({label})" in self.viewer.layers:
                self.viewer.layers.remove(f"mean surface ({label})")
        runs = f"Cancelled after {u.n} of {requested} runs" if requested and u.n < requested else f"{u.n} runs"
        self.status.setText(f"{runs}: max variance {vmax:.4f}, voxels with variance > 0.01: "
                            f"{int((u.variance > 0.01).sum()):,}.{hidden}")

    def _show_surface(self, u, label: str, vmax: float, source, prov) -> None:
        """The mean's p = 0.5 surface coloured by variance, drawn instead of the two volumes."""
        name = f"mean surface ({label})"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        for volume_name in (f"mean probability ({label})", f"variance ({label})"):
            self.viewer.layers[volume_name].visible = False  # kept for slices, values and saving
        geometry = geometry_kwargs(source, prov)
        on_canvas, in_dock = surface_variance_colormaps()
        surface = add_volume_layer(self.viewer, u.mean, name, "mesh", colormap=on_canvas, values=u.variance,
                                   contrast_limits=(0.0, vmax), **geometry)
        if surface is not None:
            show_layer_colorbar(surface)
            self.colour_bar.show_bar(in_dock, 0.0, vmax, "variance over the N runs, on the mean surface (probability²)")

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setValue(done)
        self.status.setText(f"{done} / {total} runs…")

    def _finished(self, outcome: Outcome, source, method, requested: int | None = None) -> None:
        if self.closed:
            self.status.setText("Stopped: the dock was closed.")
        elif outcome.status == "done":
            self._show(outcome.output, source, method, requested)
        else:
            self.status.setText(f"Failed: {outcome.message}")
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.worker = None

    def cancel(self) -> None:
        """Stop after the current batch; the runs done so far are shown."""
        if self.worker is not None:
            self.worker.cancel()
        self.status.setText("Cancelling after the current batch…")
