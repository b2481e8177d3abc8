"""Shared pieces of the review widgets: layer pickers, layer geometry, adding result layers."""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget

from lsdebm.data.boxes import resample
from lsdebm.data.nifti import affine_spacing
from lsdebm.errors import InputError
from napari_lsdebm.io.nifti import layer_affine

NONE = "(none)"
REVIEW_KEY = "lsdebm_review"  # metadata flag of layers made by the review widgets


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers of the given types, kept in sync with the layer list.

    The choice is a layer object, not a name: renaming the chosen layer (or any other) keeps it chosen.
    When the chosen layer leaves the viewer, the picker falls back to the first layer that is not
    ``avoid()`` (set it to a sibling picker's ``layer``, so that deleting a reference does not make
    the prediction its own reference). Emits ``layer_changed(layer_or_None)`` when the choice changes.
    """

    layer_changed = Signal(object)
    renamed = Signal(object)  # the chosen layer, renamed

    def __init__(self, viewer, types: tuple, optional: bool = False, accept=None, parent=None) -> None:
        super().__init__(parent)
        self.viewer, self.types, self.optional = viewer, types, optional
        self.accept = accept or (lambda layer: True)
        self._last = None
        self.avoid = lambda: None  # a layer not to fall back to (a sibling picker's choice)
        self._items: list = []  # the layer of each item (None: the "(none)" item)
        # long layer names (a sample's carries its licence) are cut short, not widening the dock over the canvas
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(22)
        events = viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self.refresh)
        self.currentIndexChanged.connect(self._emit)
        self.refresh()

    def _candidates(self) -> list:
        return [lay for lay in self.viewer.layers if isinstance(lay, self.types) and self.accept(lay)]

    def layers(self) -> list:
        """The layers listed (in list order)."""
        return [lay for lay in self._items if lay is not None]

    def refresh(self, event=None) -> None:
        current = self.layer()
        self.blockSignals(True)
        self.clear()
        self._items = [None] if self.optional else []
        if self.optional:
            self.addItem(NONE)
        for lay in self._candidates():
            self.addItem(lay.name)
            self._items.append(lay)
            lay.events.name.disconnect(self._on_name)
            lay.events.name.connect(self._on_name)
        idx = self._index_of(current)
        self.setCurrentIndex(idx if idx >= 0 else self._fallback())
        self.blockSignals(False)
        self._emit()

    def _on_name(self, event) -> None:
        self.refresh()
        if event.source is self.layer():
            self.renamed.emit(event.source)

    def _fallback(self) -> int:
        """The "(none)" item of an optional picker, else the first layer other than ``avoid()`` (else the first)."""
        avoided = self.avoid()
        return next((i for i, lay in enumerate(self._items) if lay is None or lay is not avoided), 0)

    def _index_of(self, layer) -> int:
        return next((i for i, lay in enumerate(self._items) if lay is layer and lay is not None), -1)

    def layer(self):
        """The chosen layer (while it is in the viewer), or None."""
        idx = self.currentIndex()
        lay = self._items[idx] if 0 <= idx < len(self._items) else None
        return lay if lay is not None and lay in self.viewer.layers else None

    def set_layer(self, layer) -> None:
        idx = self._index_of(layer) if layer is not None else (0 if self.optional else -1)
        if idx >= 0:
            self.setCurrentIndex(idx)

    def _emit(self, *_) -> None:
        lay = self.layer()
        if lay is not self._last:
            self._last = lay
            self.layer_changed.emit(lay)


class PathRow(QWidget):
    """A line edit with a browse button for a ``.safetensors`` file; empty means the bundled default."""

    def __init__(self, placeholder: str, parent=None) -> None:
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        button = QPushButton("…")
        button.setFixedWidth(28)
        button.clicked.connect(self._browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(button)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose checkpoint", "", "Checkpoints (*.safetensors)")
        if path:
            self.edit.setText(path)

    def value(self) -> str | None:
        return self.edit.text().strip() or None


def affine_of(layer) -> np.ndarray:
    """The source affine of a layer (metadata), else where napari draws it: scale, translate, rotate, shear and
    napari's own ``affine`` (a layer shown with ``affine=nifti_affine`` has scale 1 and its spacing there)."""
    if layer.metadata.get("affine") is None and hasattr(layer, "data_to_world"):
        return display_matrix(layer)
    return layer_affine({"metadata": dict(layer.metadata), "scale": layer.scale, "translate": layer.translate})


def drawn_as(layer) -> dict:
    """Layer kwargs that draw a layer on ``layer``'s grid where it is drawn: napari's own ``affine`` of a layer
    that napari places by itself (no source affine in its metadata; the others are placed by scale/translate)."""
    if layer.metadata.get("affine") is not None or getattr(layer, "affine", None) is None:
        return {}
    return {"affine": np.asarray(layer.affine.affine_matrix, float)}


def display_matrix(layer) -> np.ndarray:
    """4x4 from ``layer``'s (last three) data indices to the viewer's coordinates (napari's transforms).

    Raises:
        InputError: If the layer has fewer than three dimensions (a 2D image is no volume).
    """
    ndim = layer.ndim
    if ndim < 3:
        raise InputError(f"layer {layer.name!r} is {ndim}D (shape {tuple(np.shape(layer.data))}); expected a 3D volume")
    lead = np.zeros(ndim - 3)

    def to_world(index) -> np.ndarray:
        return np.asarray(layer.data_to_world(np.concatenate([lead, index])), float)[-3:]

    origin = to_world(np.zeros(3))
    out = np.eye(4)
    out[:3, :3] = np.stack([to_world(np.eye(3)[i]) - origin for i in range(3)], axis=1)
    out[:3, 3] = origin
    return out


def mask_of(layer) -> np.ndarray:
    """A layer as a boolean mask: Labels nonzero, Image >= 0.5."""
    data = np.asarray(layer.data)
    return data >= 0.5 if data.dtype.kind == "f" else data != 0


def is_mask_layer(layer) -> bool:
    """Labels layers, and the {0, 1} mask Image layers of the comparison view; not its TP/FP/FN maps (labels 1-3
    of a mask against the truth: exported as a mask, nonzero would read as prediction or truth)."""
    from napari.layers import Labels

    kind = layer.metadata.get("mask_kind")
    return (isinstance(layer, Labels) and kind != "overlap") or kind == "mask"


def spacing_of(layer) -> tuple:
    """Voxel size in mm along the array axes (the layer's world affine, not only its ``scale``)."""
    return tuple(float(s) for s in affine_spacing(affine_of(layer)))


def geometry_kwargs(layer, provenance: dict | None = None, **metadata) -> dict:
    """Layer kwargs that put a result where ``layer`` is: scale, translate, affine, provenance."""
    meta = {"affine": affine_of(layer), "source": layer.metadata.get("source"), REVIEW_KEY: True, **metadata}
    if provenance:
        meta["provenance"] = provenance
    return {"scale": tuple(layer.scale), "translate": tuple(layer.translate), "metadata": meta, **drawn_as(layer)}


def put_layer(viewer, kind: str, data, name: str, **kwargs):
    """Add a layer, or update the review layer of the same name in place (keeps its position)."""
    existing = viewer.layers[name] if name in viewer.layers else None
    real = getattr(existing, "__wrapped__", existing)  # a script may hand napari's proxy (type PublicOnlyProxy)
    if real is not None and real.metadata.get(REVIEW_KEY) and type(real).__name__.lower() == kind:
        layer = existing
        layer.data = data
        for key in ("scale", "translate", "affine", "metadata", "colormap", "contrast_limits", "features"):
            if key in kwargs:
                setattr(layer, key, kwargs[key])
        return layer
    features = kwargs.pop("features", None)
    layer = getattr(viewer, f"add_{kind}")(data, name=name, **kwargs)
    if features is not None:  # set after adding: napari 0.9 asks a new active layer with features for its
        layer.features = features  # status, which raises in 3D before the mouse moved over the canvas
    return layer


def camera_of(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def grid_of(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` from napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def fit_view(viewer, layers) -> None:
    """Reset the view to fit ``layers`` only (hidden layers, such as a whole spine beside one vertebra's result,
    would otherwise set the extent). Every layer is fitted where napari cannot fit a subset: before napari 0.6,
    or when the layers have fewer dimensions than the viewer (napari 0.9 indexes their extent by the viewer's)."""
    layers = list(layers)
    if any(lay.ndim != viewer.dims.ndim for lay in layers):
        viewer.reset_view()
        return
    try:
        viewer.reset_view(layers=layers)
    except TypeError:
        viewer.reset_view()


def frame_box(viewer, lo_world, hi_world) -> None:
    """After a reset of the view, centre the camera on the world box ``lo``..``hi`` (the displayed axes, the last
    three) and zoom so that it fills the view as the whole scene did: one vertebra of a spine's label map, whose
    layers span the whole map. Needs napari's shared-camera grid (0.9); before, grid cells are offsets of one
    scene and a shared centre would frame only one of them, so the view is left as it is."""
    if getattr(viewer, "canvas", None) is None or not hasattr(viewer.canvas, "grid"):
        return
    lo, hi = np.asarray(lo_world, float)[-3:], np.asarray(hi_world, float)[-3:]
    scene = np.asarray(viewer.layers.extent.world, float)[:, -3:]
    size, whole = float(np.max(hi - lo)), float(np.max(scene[1] - scene[0]))
    if size <= 0 or whole <= size:
        return
    camera = camera_of(viewer)
    camera.center = tuple((lo + hi) / 2)
    camera.zoom = camera.zoom * 0.9 * whole / size  # a little room for the oblique 3D view


def boxed_geometry(layer, box, affine):
    """What :func:`geometry_kwargs` reads of ``layer``, for its index ``box`` (a structure cut from a whole-body
    map): its name, scale and metadata, the translate moved to the box's first voxel, the box's ``affine``.
    ``box`` None: the layer itself."""
    if box is None:
        return layer
    from types import SimpleNamespace

    scale, translate = np.asarray(layer.scale, float), np.array(layer.translate, float)
    translate[-3:] += np.array([b.start for b in box]) * scale[-3:]
    return SimpleNamespace(name=layer.name, scale=tuple(scale), translate=tuple(translate),
                           metadata={**dict(layer.metadata), "affine": np.asarray(affine, float)})


def on_grid_of(layer, other) -> np.ndarray:
    """``other``'s data on ``layer``'s grid, through the two layers' affines (world, scanner mm): as it is when
    the grids are the same; cut out (zero where ``other`` does not reach) when they differ by a whole-voxel
    shift (Compare's cells, cut to a vertebra's box, against the whole map's ground truth); else resampled
    (nearest neighbour). Data that is not 3D is returned as it is (the caller refuses a mismatch)."""
    data, shape = np.asarray(other.data), np.shape(layer.data)
    if data.ndim != 3 or len(shape) != 3:
        return data
    frames = [affine_of(x) if all(y.metadata.get("affine") is not None for y in (layer, other)) else
              display_matrix(x) for x in (layer, other)]  # world when both know it, else where they are drawn
    to_other = np.linalg.solve(frames[1], frames[0])  # layer index -> other index
    same_axes = np.allclose(to_other[:3, :3], np.eye(3), atol=1e-4)
    shift = to_other[:3, 3]
    if same_axes and data.shape == shape and np.allclose(shift, 0, atol=1e-3):
        return data
    if not same_axes or not np.allclose(shift, np.round(shift), atol=1e-3):
        return resample(data, shape, frames[0], frames[1], 0).astype(data.dtype)
    shift = np.round(shift).astype(int)  # index i of layer is index i + shift of other
    src = tuple(slice(max(o, 0), min(o + n, m)) for o, n, m in zip(shift, shape, data.shape))
    out = np.zeros(shape, data.dtype)
    if all(s.stop > s.start for s in src):
        out[tuple(slice(s.start - o, s.stop - o) for s, o in zip(src, shift))] = data[src]
    return out
