"""Compare methods: VAE, LEBM and LSD-EBM (plus ReconNet alone and the raw input) side by side.

One click runs :func:`lsdebm.review.compare.compare_events` in a worker thread (progress bar,
cancel) and lays the results out in napari's grid mode -- one shared camera and dims, one cell
per method, each cell titled with its layer name (method and DSC against the ground truth).
"""
from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels
from napari.utils.colormaps import Colormap, DirectLabelColormap
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

from lsdebm.data.boxes import bounding_box, union_box
from lsdebm.errors import InputError
from lsdebm.methods import RunSettings
from lsdebm.review.compare import (
    LABELS,
    METHODS,
    Comparison,
    compare_events,
    compared_structure,
    load_compare_checkpoints,
    structure_box,
)
from lsdebm.review.overlap import OVERLAP_COLORS, overlap_map
from lsdebm.tasks.progress import Progress
from napari_lsdebm._ui.docking import CloseWatcher, dock_viewer
from napari_lsdebm._ui.gl_context import keep_canvas_current
from napari_lsdebm._ui.jobs import Outcome, start_job
from napari_lsdebm._ui.legends import OverlapLegend, show_canvas_note
from napari_lsdebm._ui.pickers import (
    LayerCombo,
    PathRow,
    affine_of,
    boxed_geometry,
    camera_of,
    frame_box,
    geometry_kwargs,
    grid_of,
    mask_of,
)
from napari_lsdebm._ui.roles import RESULT, AutoPick, pick_input, pick_truth, role_metadata, self_comparison
from napari_lsdebm._ui.surface_layer import RENDER_MODES, add_volume_layer

COMPARE_KEY = "lsdebm_compare"  # metadata: which comparison cell a layer is
MASK_COLOR = (0.89, 0.85, 0.76, 1.0)  # bone
SHOW_MODES = ("masks", "TP/FP/FN vs ground truth")
VIEW_ANGLES = (-20.0, 30.0, 150.0)  # oblique, from above and behind: body and posterior elements visible


def mask_colormap(color=MASK_COLOR) -> Colormap:
    """Black to bone: a {0, 1} mask Image layer shows bone where it is 1 (iso-surface in 3D)."""
    return Colormap([(0.0, 0.0, 0.0, 1.0), color], name="lsdebm bone")


def overlap_colormap() -> DirectLabelColormap:
    return DirectLabelColormap(color_dict={**OVERLAP_COLORS, None: (0, 0, 0, 0)})


CELL_TITLE_FONT_SIZE = 8  # a cell title ("raw input · DSC 0.92", <= 20 characters) fits a 1280 px window's cell


def cell_name(result) -> str:
    """Layer name of a comparison cell: the method, and its DSC (2 decimals: short) when a reference was given."""
    if result.metrics is None or result.key == "reference":
        return result.label
    return f"{result.label} · DSC {result.metrics['dsc']:.2f}"


def show_comparison(viewer, comparison: Comparison, source, reference=None, mode: str = SHOW_MODES[0],
                    ndisplay: int = 3, render: str = "mesh") -> list:
    """Add one layer per result (replacing earlier ones), hide everything else, and switch grid mode on.

    Masks are {0, 1} Image layers drawn as iso-surfaces (shaded in 3D); in overlap mode the
    method cells are TP/FP/FN Labels layers. With ``render="mesh"`` (the default) in 3D the cells
    show Surface layers of the masks' iso-surfaces instead (fast in software OpenGL, where iso ray
    casting is slow). Beside a surface or a TP/FP/FN cell the mask stays as a hidden layer ("… (mask)")
    for slices, Review and export (hidden layers take no grid cell); a TP/FP/FN map is never offered as a mask.

    Args:
        viewer: The napari viewer.
        comparison: Results on the grid of ``source``.
        source: The input layer (its scale, translate and affine are reused), or what
            :func:`napari_lsdebm._ui.pickers.boxed_geometry` makes of it for a structure's box.
        reference: Optional ground-truth layer, shown as the last cell.
        mode: ``masks`` or ``TP/FP/FN vs ground truth`` (needs ``reference``).
        ndisplay: 2 or 3.
        render: ``mesh`` (3D mask cells as Surface layers) or ``volume``.

    Returns:
        The comparison layers in grid order.
    """
    old = [lay for lay in viewer.layers if COMPARE_KEY in lay.metadata]
    ref_mask = comparison.reference if comparison.reference is not None else \
        (mask_of(reference) if reference is not None else None)  # the label compared, in a label map
    cells = [(r.key, cell_name(r), r.mask, r.provenance) for r in comparison.results]
    if reference is not None:
        cells.append(("reference", LABELS["reference"], ref_mask.astype(np.uint8), None))
    layers = []
    with viewer.layers.batched_update():  # one scene-graph update (napari gc.collects per removal, re-grids per add)
        for lay in old:
            viewer.layers.remove(lay)
        for key, name, mask, prov in cells:
            layers.append(_add_cell(viewer, source, key, name, mask, prov, ref_mask, mode, ndisplay, render))
        _lay_out_grid(viewer, layers, ndisplay, _world_box(source, [mask for _, _, mask, _ in cells]))
    return layers


def _world_box(source, masks) -> tuple | None:
    """World corners (lo, hi) of the voxels any cell holds, on ``source``'s grid (None if all are empty)."""
    box = None
    for mask in masks:  # box by box: a whole-body map's masks are never stacked
        box = union_box(box, bounding_box(mask))
    if box is None:
        return None
    scale, translate = np.asarray(source.scale, float)[-3:], np.asarray(source.translate, float)[-3:]
    lo, hi = np.array([b.start for b in box]), np.array([b.stop for b in box])
    return translate + (lo - 0.5) * scale, translate + (hi - 0.5) * scale


def _add_cell(viewer, source, key: str, name: str, mask, prov, ref_mask, mode: str, ndisplay: int, render: str):
    """The layer of one comparison cell: TP/FP/FN labels, a mesh (its mask hidden beside it) or an iso mask."""
    overlap = mode != SHOW_MODES[0] and ref_mask is not None and key != "reference"
    as_mesh = not overlap and render == "mesh" and ndisplay == 3
    kind = "overlap" if overlap else "mesh" if as_mesh else "mask"
    role = role_metadata(RESULT) if key not in ("input", "reference") else {}
    kwargs = geometry_kwargs(source, prov, **{COMPARE_KEY: key, "mask_kind": kind, **({} if overlap else role)})
    if overlap or as_mesh:  # the mask itself, hidden beside its cell: what Review and Export take as the method's mask
        viewer.add_image(mask.astype(np.float16), name=f"{name} (mask)", rendering="iso", iso_threshold=0.5,
                         contrast_limits=(0, 1), colormap=mask_colormap(), visible=False,
                         **{**kwargs, "metadata": {**kwargs["metadata"], "mask_kind": "mask", **role}})
    if overlap:  # TP/FP/FN labels: a picture of the mask against the truth, not a mask (never exported as one)
        layer = viewer.add_labels(overlap_map(mask, ref_mask).labels, name=name, **kwargs)
        layer.colormap = overlap_colormap()
    elif as_mesh:
        layer = add_volume_layer(viewer, mask, name, "mesh", colormap=mask_colormap(), **kwargs)
    else:  # a {0, 1} mask drawn as a shaded iso-surface in 3D (Labels render flat, voxel by voxel);
        # float16, because napari's iso rendering of uint8/bool {0, 1} images draws nothing
        layer = viewer.add_image(mask.astype(np.float16), name=name, rendering="iso", iso_threshold=0.5,
                                 contrast_limits=(0, 1), colormap=mask_colormap(), **kwargs)
    if hasattr(layer, "name_overlay"):
        layer.name_overlay.visible = True
        layer.name_overlay.font_size = CELL_TITLE_FONT_SIZE
    return layer


def _lay_out_grid(viewer, layers: list, ndisplay: int, box=None) -> None:
    """Hide every other layer, show ``layers`` in a two-row grid framed on the world ``box`` (lo, hi) the
    structure occupies (one vertebra of a spine's map fills its cell) and aim the 3D camera obliquely."""
    for lay in viewer.layers:
        if lay not in layers:
            lay.visible = False
    grid = grid_of(viewer)
    grid.stride = 1
    grid.shape = (2, (len(layers) + 1) // 2)
    grid.spacing = 0.05
    grid.enabled = True
    viewer.dims.ndisplay = ndisplay
    show_canvas_note(viewer, "")  # the cells carry their titles; another dock's note would cover the first
    viewer.reset_view()
    if box is not None:
        frame_box(viewer, *box)
    if ndisplay == 3:
        camera = camera_of(viewer)
        camera.angles = VIEW_ANGLES
        camera.zoom *= 1.1


class CompareWidget(QWidget):
    """Dock widget: run every method on one input and show them side by side."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer = dock_viewer(napari_viewer)  # not napari's plugin proxy (docking)
        keep_canvas_current(napari_viewer)  # removed layers' GL objects die in the canvas's context
        self.worker = None
        self.comparison: Comparison | None = None
        self.input_combo = LayerCombo(napari_viewer, (Labels, Image))
        self.reference_combo = LayerCombo(napari_viewer, (Labels,), optional=True)
        self.input_combo.avoid = self.reference_combo.layer  # a deleted input is not replaced by the reference
        for combo in (self.input_combo, self.reference_combo):  # long layer names must not widen the dock
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(20)
        self.autopicks = (AutoPick(napari_viewer, self.input_combo, pick_input),
                          AutoPick(napari_viewer, self.reference_combo, pick_truth))
        self.paths = {k: PathRow(f"bundled {k}-default") for k in ("reconnet",) + METHODS}
        self.slab = PathRow("SlabNet; 'none': classical")
        self.slab.setToolTip("The output step's slab interpolation: empty for the bundled SlabNet, 'none' for the "
                             "classical shape-based interpolation, or a SlabNet .safetensors file")
        self.label_spin = QSpinBox(maximum=100000, specialValueText="the whole mask")
        self.label_spin.setToolTip("The structure of a label map to compare (e.g. 22 for VerSe's L3), in the input "
                                   "and, when it is a label map too, in the ground truth")
        self.seed = QSpinBox(maximum=2 ** 31 - 1)
        self.K = QSpinBox(minimum=0, maximum=100000, specialValueText="checkpoint default")
        self.steps = QSpinBox(minimum=-1, maximum=1000, value=-1, specialValueText="checkpoint default")
        self.mode = QComboBox()
        self.mode.addItems(SHOW_MODES)
        self.three_d = QCheckBox("3D view", checked=True)
        self.render = QComboBox()
        self.render.addItems(RENDER_MODES)  # mesh first: the default (fast in software OpenGL too)
        self.render.setToolTip("3D masks as iso-rendered volumes, or as meshes (fast in software OpenGL)")
        self.run_button = QPushButton("Compare methods")
        self.cancel_button = QPushButton("Cancel", enabled=False)
        self.grid_button = QPushButton("Grid on/off")
        self.progress = QProgressBar(maximum=1000)
        self.status = QLabel("Choose the low-quality input (and the ground truth), then Compare.")
        self.status.setWordWrap(True)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.legend = OverlapLegend()  # the colours of the TP/FP/FN view, shown with it
        self.legend.setVisible(False)
        self._lay_out()
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.grid_button.clicked.connect(self.toggle_grid)
        self.mode.currentIndexChanged.connect(self._redisplay)
        self.render.currentIndexChanged.connect(self._redisplay)
        self.closed = False  # the dock (or the viewer) was closed: a run still ending shows nothing
        self._close_watcher = CloseWatcher(self, self._on_close)

    def _on_close(self) -> None:
        """The dock or the viewer was closed: cancel the comparison; its results are not laid out."""
        self.closed = True
        if self.worker is not None:
            self.worker.cancel()

    def _lay_out(self) -> None:
        """The options form, the buttons, then progress, status, summary and legend, top to bottom."""
        form = QFormLayout()
        form.addRow("low-quality input", self.input_combo)
        form.addRow("ground truth", self.reference_combo)
        form.addRow("label", self.label_spin)
        for kind, row in self.paths.items():
            form.addRow(f"{LABELS[kind]} checkpoint", row)
        form.addRow("slab interpolation", self.slab)
        form.addRow("seed", self.seed)
        form.addRow("LSD-EBM K", self.K)
        form.addRow("LSD-EBM depth t*", self.steps)
        form.addRow("show as", self.mode)
        form.addRow(self.three_d)
        form.addRow("render 3D as", self.render)
        buttons = QHBoxLayout()
        for b in (self.run_button, self.cancel_button, self.grid_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        for widget in (self.progress, self.status, self.summary, self.legend):
            layout.addWidget(widget)
        layout.addStretch(1)

    def settings(self) -> RunSettings:
        return RunSettings(seed=self.seed.value(), K=self.K.value() or None,
                           steps=None if self.steps.value() < 0 else self.steps.value())

    def run(self) -> None:
        """Start the comparison in a worker thread."""
        self.closed = False
        source = self.input_combo.layer()
        if source is None:
            self.status.setText("Add or open a low-quality mask layer first.")
            return
        reference = self.reference_combo.layer()
        refusal = self_comparison(source, reference)
        if refusal:
            self.status.setText(refusal)
            return
        sources = {k: row.value() for k, row in self.paths.items()}
        slab = self.slab.value() or "default"
        try:
            x, ref = compared_structure(source.data, self.label_spin.value() or None, f"layer '{source.name}'",
                                        None if reference is None else reference.data)
        except InputError as exc:
            self.status.setText(str(exc))
            return
        affine, settings = affine_of(source), self.settings()

        def work(job):  # on the worker thread: progress values, then (the Comparison, the box it ran on)
            models = load_compare_checkpoints(sources)
            # on the box the comparison can touch: a vertebra of a whole-body map took 40 s and 3 GB on the body's grid
            cut, cut_ref, cut_affine, box = structure_box(x, ref, affine, models)
            yield Progress(0, 1, "checkpoints loaded")
            return (yield from compare_events(cut, cut_affine, models, settings, cut_ref, slab=slab)), box

        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText("Loading checkpoints…")
        self.worker = start_job(work, lambda outcome: self._finished(outcome, source, reference), self._on_progress,
                                what="comparison")

    def _on_progress(self, p: Progress) -> None:
        self.progress.setValue(int(p.fraction * 1000))
        self.status.setText(f"Running {p.stage}…" if p.stage != "done" else "Laying out…")

    def _show(self, comparison: Comparison, source, reference) -> None:
        self.comparison, self._source, self._reference = comparison, source, reference
        self._redisplay()
        tilted = comparison.tilted
        self.status.setText("Done: " + ", ".join(f"{r.label} {r.seconds:.1f} s" for r in comparison.results[1:])
                            + (f"; slabs tilted {tilted.tilt_deg:.0f}° to the grid: refined on their own grid"
                               if tilted is not None else ""))

    def _redisplay(self, *_) -> None:
        if self.comparison is None:
            return
        show_comparison(self.viewer, self.comparison, self._source, self._reference, self.mode.currentText(),
                        3 if self.three_d.isChecked() else 2, self.render.currentText())
        rows = [f"<b>{r.label}</b>: DSC {r.metrics['dsc']:.3f}, HD95 {r.metrics['hd95']:.1f} mm, "
                f"ASSD {r.metrics['assd']:.2f} mm" for r in self.comparison.results if r.metrics]
        self.summary.setText("<br>".join(rows))
        self.legend.setVisible(self.mode.currentText() != SHOW_MODES[0] and self._reference is not None)

    def _finished(self, outcome: Outcome, source=None, reference=None) -> None:
        self.worker = None
        if self.closed:  # closed while it ran: leave the viewer's layers and grid alone
            outcome = Outcome("cancelled", message="Comparison cancelled (the dock was closed).")
        if outcome.status == "done":
            comparison, box = outcome.output  # the cells sit on the structure's box of the source's grid
            self._show(comparison, boxed_geometry(source, box, comparison.affine), reference)
        if outcome.status == "error":
            self.status.setText(f"Comparison failed: {outcome.message}")
        if outcome.status == "cancelled" and not self.closed:
            self.status.setText(outcome.message)  # "Comparison cancelled.": the run has stopped, not only been asked to
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def cancel(self) -> None:
        """Stop at the next progress step (the status says so at once)."""
        if self.worker is not None:
            self.worker.cancel()
            self.status.setText("Cancelled.")

    def toggle_grid(self) -> None:
        """Grid off shows every layer overlaid again; grid on returns to the comparison cells."""
        grid = grid_of(self.viewer)
        grid.enabled = not grid.enabled
        if not grid.enabled:
            return
        for lay in self.viewer.layers:
            lay.visible = COMPARE_KEY in lay.metadata
