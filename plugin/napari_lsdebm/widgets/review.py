"""Review a prediction against a reference: TP/FP/FN overlap layer and a metrics table.

The table has one row for the whole volume, one per anatomical part (when a part label map
is chosen) and one for the region of interest (a rectangle/box in a Shapes layer, or a Labels
ROI). It is recomputed in a worker thread whenever the prediction, reference, parts or ROI
change -- including when the ROI is redrawn or the user selects another Labels layer in the
layer list -- and can be copied (tab-separated, pastes into spreadsheets) or saved as CSV.
"""
from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels, Shapes
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lsdebm.errors import InputError
from lsdebm.review.overlap import OVERLAP_CLASSES, overlap_map
from lsdebm.review.roi import box_from_points, review_metrics, reviewed_pair
from lsdebm.review.table import table_rows, to_text, write_csv
from napari_lsdebm._ui.docking import dock_viewer
from napari_lsdebm._ui.gl_context import keep_canvas_current
from napari_lsdebm._ui.jobs import Outcome, error_text, start_job
from napari_lsdebm._ui.legends import OverlapLegend
from napari_lsdebm._ui.pickers import (
    LayerCombo,
    geometry_kwargs,
    grid_of,
    is_mask_layer,
    on_grid_of,
    put_layer,
    spacing_of,
)
from napari_lsdebm._ui.roles import AutoPick, pick_prediction, pick_truth, self_comparison
from napari_lsdebm.widgets.compare import overlap_colormap

OVERLAP_KEY = "lsdebm_overlap"


def is_part_map(layer) -> bool:
    return isinstance(layer, Labels) and ("parts" in layer.name.lower() or bool(layer.metadata.get("parts")))


def roi_region(roi_layer, like) -> tuple | np.ndarray:
    """The ROI of a Shapes layer (box of all its vertices) or a Labels layer (nonzero), in ``like``'s grid."""
    shape = np.shape(like.data)
    if isinstance(roi_layer, Shapes):
        if not len(roi_layer.data):
            raise InputError(f"ROI layer {roi_layer.name!r} has no shapes; draw a rectangle")
        points = np.concatenate([np.asarray(s) for s in roi_layer.data])
        world = np.array([roi_layer.data_to_world(p) for p in points])
        data = np.array([like.world_to_data(w) for w in world])[:, -len(shape):]
        return box_from_points(data, shape)
    mask = np.asarray(roi_layer.data) != 0
    if mask.shape != shape:
        raise InputError(f"ROI labels {roi_layer.name!r} have shape {mask.shape}; expected {shape}")
    return mask


def overlap_layer(viewer, pred_layer, ref_layer, label: int | None = None):
    """Add or update the TP/FP/FN Labels layer of ``pred_layer`` against ``ref_layer`` (of one structure of a
    label map with ``label``, as :func:`lsdebm.review.roi.reviewed_pair`); returns (layer, overlap)."""
    ov = overlap_map(*reviewed_pair(pred_layer.data, on_grid_of(pred_layer, ref_layer), label,
                                    f"prediction {pred_layer.name!r}", f"reference {ref_layer.name!r}"))
    features = {"index": list(OVERLAP_CLASSES), "class": list(OVERLAP_CLASSES.values()),
                "voxels": [ov.counts[c] for c in OVERLAP_CLASSES.values()]}
    kwargs = geometry_kwargs(pred_layer, pred_layer.metadata.get("provenance"), **{OVERLAP_KEY: True})
    name = f"overlap: {pred_layer.name} vs {ref_layer.name}"
    layer = put_layer(viewer, "labels", ov.labels, name, features=features, **kwargs)
    layer.colormap = overlap_colormap()
    return layer, ov


class ReviewWidget(QWidget):
    """Dock widget: overlap view and metrics table of a prediction against a reference."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer = dock_viewer(napari_viewer)  # not napari's plugin proxy (docking)
        keep_canvas_current(napari_viewer)  # removed layers' GL objects die in the canvas's context
        self.rows = []
        self.worker = None
        self._pending = False
        self._said: tuple | None = None  # (say, text): a status line naming the chosen layers, said anew on a rename
        not_helper = lambda lay: OVERLAP_KEY not in lay.metadata  # noqa: E731
        self.pred_combo = LayerCombo(napari_viewer, (Labels, Image), accept=not_helper)
        self.ref_combo = LayerCombo(napari_viewer, (Labels, Image), accept=not_helper)
        self.parts_combo = LayerCombo(napari_viewer, (Labels,), optional=True)
        self.roi_combo = LayerCombo(napari_viewer, (Shapes, Labels), optional=True)
        self.label_spin = QSpinBox(maximum=100000, specialValueText="the whole mask")
        self.label_spin.setToolTip("The structure of a label-map reference to score (e.g. 22 for VerSe's L3)")
        self.follow = QCheckBox("follow the layer selection", checked=True)
        self.overlap_button = QPushButton("Overlap view (TP/FP/FN)")
        self.roi_button = QPushButton("New ROI box")
        self.copy_button = QPushButton("Copy")
        self.save_button = QPushButton("Save CSV…")
        self.legend = OverlapLegend()  # TP/FP/FN colours of the overlap view, with voxel counts once shown
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        form = QFormLayout()
        form.addRow("prediction", self.pred_combo)
        form.addRow("reference", self.ref_combo)
        form.addRow("label", self.label_spin)
        form.addRow("part labels", self.parts_combo)
        form.addRow("ROI", self.roi_combo)
        form.addRow(self.follow)
        top = QHBoxLayout()
        top.addWidget(self.overlap_button)
        top.addWidget(self.roi_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.copy_button)
        bottom.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(top)
        layout.addWidget(self.legend)
        layout.addWidget(self.table, 1)
        layout.addLayout(bottom)
        layout.addWidget(self.status)
        self._timer = QTimer(self, singleShot=True, interval=250)
        self._timer.timeout.connect(self.update_metrics)
        for combo in (self.pred_combo, self.ref_combo, self.parts_combo, self.roi_combo):
            combo.layer_changed.connect(self._schedule)
        self.label_spin.valueChanged.connect(self._schedule)
        self.roi_combo.layer_changed.connect(self._watch_roi)
        for combo in (self.pred_combo, self.ref_combo):
            combo.renamed.connect(self._on_chosen_renamed)
        self.overlap_button.clicked.connect(self.show_overlap)
        self.roi_button.clicked.connect(self.new_roi)
        self.copy_button.clicked.connect(self.copy)
        self.save_button.clicked.connect(self._save_dialog)
        napari_viewer.layers.selection.events.active.connect(self._on_active)
        self._guess_defaults()
        self._schedule()

    def _guess_defaults(self) -> None:
        """Pick a part map by name; prediction = newest result (else the input), reference = the truth.

        Both follow the layer roles (:mod:`napari_lsdebm._ui.roles`) until the user picks a layer;
        neither falls back to the other's layer when its own is deleted.
        """
        self.pred_combo.avoid, self.ref_combo.avoid = self.ref_combo.layer, self.pred_combo.layer
        parts = [lay for lay in self.viewer.layers if is_part_map(lay)]
        if parts:
            self.parts_combo.set_layer(parts[0])
        self.autopicks = (AutoPick(self.viewer, self.ref_combo, pick_truth),
                          AutoPick(self.viewer, self.pred_combo, pick_prediction))

    def _on_active(self, event) -> None:
        layer = event.value
        if (self.follow.isChecked() and layer is not None and is_mask_layer(layer) and not is_part_map(layer)
                and OVERLAP_KEY not in layer.metadata and layer is not self.ref_combo.layer()
                and layer is not self.roi_combo.layer()):
            self.pred_combo.set_layer(layer)

    def _watch_roi(self, layer) -> None:
        if layer is not None:
            layer.events.data.disconnect(self._schedule)
            layer.events.data.connect(self._schedule)
            if isinstance(layer, Labels):
                layer.events.paint.disconnect(self._schedule)
                layer.events.paint.connect(self._schedule)

    def _schedule(self, *_) -> None:
        self._timer.start()

    def new_roi(self) -> None:
        """Add an empty Shapes layer in rectangle mode and use it as the ROI.

        napari draws shapes only on 2D slices, and in Compare's grid the new layer would get an
        empty cell of its own: the canvas first goes to 2D, grid off, with the prediction shown.
        """
        like = self.pred_combo.layer()
        self.viewer.dims.ndisplay = 2
        grid_of(self.viewer).enabled = False
        if like is not None:
            like.visible = True
        kwargs = {"ndim": like.ndim, "scale": like.scale, "translate": like.translate} if like is not None else {}
        layer = self.viewer.add_shapes(name="ROI", edge_color="yellow", face_color="transparent", edge_width=1,
                                       **kwargs)
        layer.mode = "add_rectangle"
        self.roi_combo.set_layer(layer)
        self.status.setText("Draw a rectangle (it spans all slices; draw on two slices to limit the depth).")

    def show_overlap(self):
        """Create or update the overlap layer and the colour legend."""
        pred, ref = self.pred_combo.layer(), self.ref_combo.layer()
        if pred is None or ref is None:
            self.status.setText("Choose a prediction and a reference layer.")
            return None
        if self_comparison(pred, ref):
            self._refuse(pred, ref)
            return None
        try:
            layer, ov = overlap_layer(self.viewer, pred, ref, self.label_spin.value() or None)
        except InputError as exc:
            self.status.setText(str(exc))
            return None
        self.legend.show_counts(ov.counts)
        return layer

    def update_metrics(self) -> None:
        """Recompute the table in a worker (a request during a run is queued; the newest wins)."""
        pred, ref = self.pred_combo.layer(), self.ref_combo.layer()
        if pred is None or ref is None:
            self.status.setText("Choose a prediction and a different reference layer.")
            return
        if self_comparison(pred, ref):
            self.rows = []
            self.table.setRowCount(0)
            self._refuse(pred, ref)
            return
        if self.worker is not None:
            self._pending = True
            return
        parts_layer, roi_layer = self.parts_combo.layer(), self.roi_combo.layer()
        try:
            p, r = reviewed_pair(pred.data, on_grid_of(pred, ref), self.label_spin.value() or None,
                                 f"prediction {pred.name!r}", f"reference {ref.name!r}")
            if p.shape != r.shape:
                raise InputError(f"{pred.name!r} {p.shape} and {ref.name!r} {r.shape} are on different grids")
            parts = np.asarray(parts_layer.data) if parts_layer is not None else None
            if parts is not None and parts.shape != p.shape:
                raise InputError(f"part labels {parts_layer.name!r} have shape {parts.shape}; expected {p.shape}")
            roi = roi_region(roi_layer, pred) if roi_layer is not None else None
        except InputError as exc:
            self.rows = []  # the previous pair's numbers would read as this pair's
            self.table.setRowCount(0)
            self.status.setText(str(exc))
            return
        spacing = spacing_of(pred)
        roi_name = f"ROI ({roi_layer.name})" if roi_layer is not None else "ROI"
        self.status.setText(f"Computing metrics of {pred.name!r} against {ref.name!r}…")
        self.worker = start_job(lambda job: review_metrics(p, r, spacing, parts, None, roi, roi_name), self._done,
                                what="metrics")

    def _done(self, outcome: Outcome) -> None:
        if outcome.status == "done":
            self._show_rows(outcome.output)
        else:
            self.status.setText(outcome.message)
        self.worker = None
        if self._pending:
            self._pending = False
            self.update_metrics()

    def _show_rows(self, rows) -> None:
        self.rows = rows
        text = table_rows(rows, digits=3)
        self.table.setColumnCount(len(text[0]))
        self.table.setRowCount(len(text) - 1)
        self.table.setHorizontalHeaderLabels(text[0])
        for i, row in enumerate(text[1:]):
            for j, value in enumerate(row):
                self.table.setItem(i, j, QTableWidgetItem(value))
        self.table.resizeColumnsToContents()
        self._say_summary(self.pred_combo.layer(), self.ref_combo.layer(), len(rows))

    def _say_summary(self, pred, ref, n: int) -> None:
        """The summary "<prediction> vs <reference>: n regions" in the status line, following renames of either."""
        if pred is None or ref is None:  # removed meanwhile: the names the pickers show
            self._said = None
            self.status.setText(f"{self.pred_combo.currentText()} vs {self.ref_combo.currentText()}: {n} regions")
            return
        self._say(lambda: f"{pred.name} vs {ref.name}: {n} regions")

    def _refuse(self, pred, ref) -> None:
        self._say(lambda: self_comparison(pred, ref))

    def _say(self, say) -> None:
        """Show ``say()`` in the status line; renaming the chosen prediction or reference says it anew."""
        self._said = (say, say())
        self.status.setText(self._said[1])

    def _on_chosen_renamed(self, layer) -> None:
        """Name a renamed prediction or reference anew, while the status line still shows what named it."""
        if self._said is not None and self.status.text() == self._said[1]:
            self._say(self._said[0])

    def copy(self) -> None:
        """Copy the table as tab-separated text."""
        if self.rows:
            QApplication.clipboard().setText(to_text(self.rows, "\t", digits=6))
            self.status.setText("Table copied.")

    def save_csv(self, path, overwrite: bool = False):
        return write_csv(path, self.rows, overwrite=overwrite)

    def _save_dialog(self) -> None:
        if not self.rows:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save metrics table", "metrics.csv", "CSV (*.csv)")
        if path:
            try:
                self.status.setText(f"Saved {self.save_csv(path, overwrite=True)}")  # the dialog asked already
            except Exception as exc:  # noqa: BLE001 - shown to the user
                self.status.setText(error_text(exc))
