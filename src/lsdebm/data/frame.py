"""The model frame: moving a structure between its own grid and the model grid, in one place.

A real file (a binary mask or a multi-label map such as VerSe or TotalSegmentator output) keeps
its affine; one structure is cropped around its centroid and resampled into the model frame
(:func:`lsdebm.data.phantoms.grid_affine`: a cubic grid at the model spacing whose axes point
superior, posterior, right, or the structure's own axes with ``frame='pose'``), and a result on
the model grid is pasted back into the original grid (:func:`paste_back`, masks;
:func:`paste_probabilities` / :func:`volume_to_input`, linear maps).

**The one model-grid rule** (:func:`on_model_grid`), used by the explorer, Compare, uncertainty and
the evaluation: a volume is already on the model grid -- and is used as is, without cropping --
when its shape is the model grid's *and* its voxel size (the affine's column norms) equals the
model spacing (relative tolerance 1e-3). The orientation is not compared: a model-grid volume
written in scanner axes is used as is. Any other volume is cropped and resampled (:func:`crop_to_model`).
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np

from lsdebm.data.boxes import bounding_box, box_affine, grown_box, resample, resample_box
from lsdebm.data.phantoms import LEVELS, make_vertebra
from lsdebm.data.pose import WORLD_AXES, frame_affine, pose_for
from lsdebm.data.validate import check_affine, foreground
from lsdebm.errors import InputError, InputWarning
from lsdebm.limits import array_bytes, check_memory

#: Relative tolerance of the voxel-size comparison in :func:`on_model_grid`.
SPACING_RTOL = 1e-3


def affine_spacing(affine: np.ndarray) -> tuple:
    """Voxel size in mm per array axis: the norms of the affine's first three columns."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def on_model_grid(shape, affine, grid: int, spacing: float) -> bool:
    """True when a volume of ``shape`` with ``affine`` is already on the model grid (see module doc).

    Shape equal to ``(grid,) * 3`` and voxel size equal to ``spacing`` in every axis.
    """
    shape = tuple(int(v) for v in shape)
    return shape == (int(grid),) * 3 and bool(np.allclose(affine_spacing(affine), float(spacing), rtol=SPACING_RTOL))


@dataclass(frozen=True)
class CropInfo:
    """Where a crop came from, for :func:`paste_back`.

    Attributes:
        source_shape: Shape of the original volume.
        source_affine: Affine of the original volume.
        crop_affine: Affine of the crop (model frame, centred on the centroid).
        label: Label id that was cropped (None: any nonzero voxel).
        centroid_mm: Centroid of the cropped component in world mm.
        frame: ``world`` (scanner axes) or ``pose`` (the structure's own frame, see
            :mod:`lsdebm.data.pose`).
        tilt_deg: Rotation of the crop frame away from the scanner axes.
    """

    source_shape: tuple
    source_affine: np.ndarray
    crop_affine: np.ndarray
    label: int | None
    centroid_mm: tuple
    frame: str = "world"
    tilt_deg: float = 0.0


def covered_fraction(binary: np.ndarray, affine, crop_affine, grid: int) -> np.ndarray:
    """Share of each model voxel covered by ``binary``: the mean of 2x2x2 linear sub-samples."""
    sub = np.diag([0.5, 0.5, 0.5, 1.0])
    sub[:3, 3] = -0.25  # sub-sample j sits at model index (j - 0.5) / 2
    fine = resample(binary.astype(np.float32), (2 * grid,) * 3, crop_affine @ sub, affine, order=1)
    return np.clip(fine.reshape(grid, 2, grid, 2, grid, 2).mean(axis=(1, 3, 5)), 0.0, 1.0).astype(np.float32)


def _warn_if_cut_off(where: str, voxels: np.ndarray, shape: tuple, affine: np.ndarray, crop_affine: np.ndarray,
                     grid: int, spacing: float) -> None:
    """Warn (at crop_label's caller) when the structure touches the volume border or leaves the model's view."""
    touching = [axis for axis in range(3) if voxels[:, axis].min() == 0
                or voxels[:, axis].max() == shape[axis] - 1]
    if touching:
        warnings.warn(f"{where} touches the volume border along axis {touching}; it may be cut off "
                      "(the crop is padded with background)", InputWarning, stacklevel=3)
    coords = in_crop_index(voxels, affine, crop_affine)
    if beyond_crop(coords, grid):
        reach = float(np.abs(coords - (grid - 1) / 2).max() * spacing)
        warnings.warn(f"{where} reaches {reach:.0f} mm from the crop centre, beyond the model's field of view "
                      f"(+-{grid * spacing / 2:g} mm); the model sees only that part (beyond it the measurement-aware "
                      "output step shapes the observed slabs alone; --unguided cuts it off)", InputWarning,
                      stacklevel=3)


def in_crop_index(voxels: np.ndarray, affine, crop_affine) -> np.ndarray:
    """Index coordinates (n, 3) of the voxels ``voxels`` (n, 3) of the grid ``affine`` in the crop ``crop_affine``."""
    in_crop = (np.linalg.inv(np.asarray(crop_affine, float)) @ np.asarray(affine, float))[:3]
    return np.asarray(voxels, float) @ in_crop[:, :3].T + in_crop[:, 3]


def beyond_crop(coords: np.ndarray, grid: int) -> bool:
    """Whether any of the crop index coordinates ``coords`` (:func:`in_crop_index`) lies outside the crop."""
    return bool(len(coords)) and bool(coords.min() < -0.5 or coords.max() > grid - 0.5)


def _crop_values(binary: np.ndarray, affine: np.ndarray, crop_affine: np.ndarray, grid: int, values: str):
    """The structure on the model grid: ``fraction`` coverage, else linear resampling thresholded at 0.5."""
    if values == "fraction":
        return covered_fraction(binary, affine, crop_affine, grid)
    return (resample(binary.astype(np.float32), (grid,) * 3, crop_affine, affine, order=1) >= 0.5).astype(np.uint8)


def crop_label(data, affine, label: int | None = None, grid: int = 64, spacing: float = 2.0, offset_mm=None,
               frame: str = "world", values: str = "binary", box: tuple[slice, ...] | None = None):
    """Crop one structure around its centroid and resample it to the model grid.

    A structure touching the volume border, or extending past the model's field of view
    (``grid * spacing`` mm), is cropped with background padding and reported with an
    :class:`InputWarning` (it may be cut off).

    Args:
        data: 3D mask or label map (see :func:`lsdebm.data.validate.foreground` for values other than {0, 1}).
        affine: Its voxel-to-world affine (any orientation, anisotropic or sheared allowed).
        label: Label id to crop; None takes every nonzero voxel.
        grid: Model grid size per axis.
        spacing: Model spacing in mm.
        offset_mm: World (RAS, mm) vector from the crop centre to where the centroid should land,
            e.g. where the training phantoms have theirs (:func:`model_offset_mm`);
            None puts the centroid at the crop centre. With ``frame='pose'`` the same vector is
            taken along the structure's own axes.
        frame: ``world`` crops along the scanner axes; ``pose`` along the structure's anatomical
            frame (:func:`lsdebm.data.pose.estimate_pose`), so a tilted vertebra reaches the model
            upright; :func:`paste_back` undoes either through the crop affine.
        values: ``binary`` (linear resampling thresholded at 0.5) or ``fraction`` (the share of
            each model voxel inside the structure, from 2x2x2 linear sub-samples).
        box: An index box holding every voxel of the structure (:func:`lsdebm.data.label_census.label_boxes`).

    Returns:
        ``(crop, info)``: an array of shape (grid,)*3 in the model frame (uint8 {0, 1}, or
        float32 in [0, 1] for ``fraction``) and the :class:`CropInfo` needed to paste a result back.

    Raises:
        InputError: If the data is not 3D, the affine is unusable, the volume is empty, the
            label is absent (the present ones are listed), the grid would not fit in memory,
            or the structure is smaller than one model voxel (a spacing/units error).
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise InputError(f"expected a 3D volume, got shape {data.shape}")
    if int(grid) < 1 or not spacing > 0:
        raise InputError(f"model grid {grid} / spacing {spacing} mm must be positive")
    check_memory(3 * array_bytes((grid,) * 3, 4), f"a crop on the {grid}^3 model grid")
    affine = check_affine(affine, "crop_label")
    where = f"label {label}" if label is not None else "the structure"
    # Only the structure's box and one background voxel around it are read: it costs what its box costs.
    hint = tuple(slice(0, n) for n in data.shape) if box is None else grown_box(box, 1, data.shape)
    binary = foreground(data[hint], label)
    inner = bounding_box(binary, 1)
    box = tuple(slice(h.start + b.start, h.start + b.stop) for h, b in zip(hint, inner))
    binary, box_aff = binary[inner], box_affine(affine, box)
    voxels = np.argwhere(binary) + np.array([s.start for s in box])
    pose = pose_for(frame, binary, box_aff)
    offset = np.zeros(3) if offset_mm is None else WORLD_AXES.T @ np.asarray(offset_mm, dtype=np.float64)
    crop_affine = frame_affine(pose, grid, spacing, offset)
    _warn_if_cut_off(where, voxels, data.shape, affine, crop_affine, grid, spacing)
    crop = _crop_values(binary, box_aff, crop_affine, grid, values)
    if not (crop >= 0.5).any():
        raise _unseen(where, voxels, affine, spacing)
    info = CropInfo(tuple(data.shape), affine, crop_affine, label, tuple(float(v) for v in pose.centroid_mm),
                    pose.method, round(pose.tilt_deg(), 2))
    return crop, info


def _unseen(where: str, voxels: np.ndarray, affine, spacing: float) -> InputError:
    """The error for a structure the model grid cannot see: smaller than one of its voxels, or thinner along an axis."""
    vox = affine_spacing(affine)
    extent = (np.ptp(voxels, axis=0) + 1) * vox  # the structure's mm along each array axis
    size = (f"only {extent.min():g} mm thick along array axis {int(np.argmin(extent))}, thinner than"
            if extent.min() < spacing <= extent.max() else "smaller than")
    return InputError(f"{where} ({len(voxels)} voxels of {tuple(round(v, 4) for v in vox)} mm) is {size} one "
                      f"{spacing:g} mm model voxel; check the file's spacing (units?) and that it holds a whole 3D "
                      "structure")


def paste_probabilities(crop_result, info: CropInfo, out_shape=None, out_affine=None) -> np.ndarray:
    """Resample a model-grid probability map (linear) onto a target grid, zero outside the crop.

    The target is the cropped volume's own grid unless ``out_shape``/``out_affine`` name another
    (an isotropic output grid, or another image's grid). Only the box the crop covers is computed.
    """
    crop_result = np.asarray(crop_result, dtype=np.float32)
    if crop_result.ndim != 3:
        raise InputError(f"can only paste back a 3D result, got shape {crop_result.shape}")
    if not np.all(np.isfinite(crop_result)):
        raise InputError("the result to paste back contains NaN or infinite values; expected probabilities in [0, 1]")
    shape = tuple(info.source_shape if out_shape is None else out_shape)
    target = np.asarray(info.source_affine if out_affine is None else out_affine, dtype=np.float64)
    return resample_box(crop_result, shape, target, info.crop_affine, order=1)


def replace_label(base, pasted: np.ndarray, label: int | None, in_place: bool = False) -> np.ndarray:
    """``base`` (a copy unless ``in_place``) with ``label`` (1 for a binary mask) replaced by ``pasted``."""
    out = base if in_place else np.array(base, copy=True)
    value = 1 if label is None else label
    if label is not None:
        out[out == label] = 0
    out[pasted] = value
    return out


def paste_back(crop_result, info: CropInfo, base=None) -> np.ndarray:
    """Resample a model-grid result back into the original grid.

    Args:
        crop_result: Mask (or probability map in [0, 1]) on the crop grid.
        info: The :class:`CropInfo` returned by :func:`crop_label`.
        base: Optional original label map; the result replaces ``info.label`` in a copy
            of it: the label's old voxels are cleared and every voxel of the result takes the
            label, also where another label was (other labels keep their remaining voxels).
            Without it a uint8 {0, 1} mask is returned.

    Returns:
        An array with the original shape: the pasted mask, or the updated label map.
    """
    if base is not None and np.shape(base) != tuple(info.source_shape):
        raise InputError(f"base volume has shape {np.shape(base)}; expected the cropped volume's {info.source_shape}")
    pasted = paste_probabilities(crop_result, info) >= 0.5
    if base is None:
        return pasted.astype(np.uint8)
    return replace_label(base, pasted, info.label)


#: The smallest model field of view (mm) that holds a lumbar vertebra's body and canal, the frame's reference.
MIN_MODEL_VIEW_MM = 48.0


@functools.lru_cache(maxsize=8)
def model_offset_mm(grid: int, spacing: float) -> tuple[float, float, float]:
    """Where the training phantoms put a vertebra's centroid, relative to the grid centre (RAS mm).

    The models learned vertebrae in the phantom frame, whose centroid sits ~13 mm anterior of
    the grid centre (the frame is centred near the canal). A real structure is cropped so that
    its centroid lands at the same place: the mean centroid of L1-L5 phantoms, seeds 0-3.
    """
    if grid * spacing < MIN_MODEL_VIEW_MM:  # phantoms on it are empty: the offset was NaN, then a deep ValueError
        raise InputError(f"the model grid ({grid}^3 at {spacing:g} mm, {grid * spacing:g} mm across) cannot hold a "
                         f"vertebra (50-100 mm across); expected a checkpoint whose field of view does, e.g. 64 voxels "
                         "at 2 mm (lsdebm convert --spacing sets a converted model's voxel size)")
    centroids = []
    for level in LEVELS:
        for seed in range(4):
            p = make_vertebra(level, seed, grid, spacing)
            centroids.append(p.affine[:3, :3] @ np.argwhere(p.mask).mean(0) + p.affine[:3, 3])
    return tuple(float(v) for v in np.mean(centroids, axis=0))


def centroid_offset_world(model_cfg=None, grid: int = 64, spacing: float = 2.0) -> tuple[float, float, float]:
    """Where a structure's centroid goes relative to the grid centre, as a world (RAS) vector in mm.

    A checkpoint that stores ``model.centroid_offset_mm`` (superior, posterior, right) uses it;
    older ones use the phantoms' mean (:func:`model_offset_mm`).
    """
    stored = tuple(getattr(model_cfg, "centroid_offset_mm", ()) or ())
    if stored:
        return tuple(float(v) for v in WORLD_AXES @ np.asarray(stored, dtype=np.float64))
    return model_offset_mm(grid, float(spacing))


def crop_to_model(data: np.ndarray, affine: np.ndarray, label: int | None, grid: int, spacing: float,
                  model_cfg=None, values: str | None = None, box: tuple[slice, ...] | None = None):
    """:func:`crop_label` into the model frame the way the checkpoint was trained.

    ``model_cfg`` (a :class:`lsdebm.config.ModelConfig`) gives the frame (``world`` or ``pose``),
    the centroid offset and the input values (``binary`` or ``fraction``; ``values`` overrides
    it: the first stage's, when ReconNet feeds another model); without it: scanner axes, the
    phantoms' centroid offset and a binary crop. ``box``: see :func:`crop_label`.
    """
    frame = getattr(model_cfg, "frame", "world") if model_cfg is not None else "world"
    values = values or getattr(model_cfg, "input_values", "binary")
    return crop_label(data, affine, label, grid, spacing, offset_mm=centroid_offset_world(model_cfg, grid, spacing),
                      frame=frame, values=values, box=box)


def to_model_grid(x, affine, grid: int, spacing: float, model_cfg=None) -> tuple[np.ndarray, CropInfo | None]:
    """``(crop, info)``: the mask on the model grid and how to go back (info None: already on it).

    A volume on the model grid (:func:`on_model_grid`) is only binarised (nonzero, uint8); any other
    is cropped into the checkpoint's frame with :func:`crop_to_model`.
    """
    x = np.asarray(x)
    if on_model_grid(x.shape, affine, grid, spacing):
        return (x != 0).astype(np.uint8), None
    return crop_to_model(x, affine, None, grid, spacing, model_cfg)


def mask_to_input(mask, info: CropInfo | None) -> np.ndarray:
    """A model-grid mask (or probability, thresholded at 0.5) on the input grid, uint8 {0, 1}."""
    mask = np.asarray(mask)
    if info is None:
        return (mask >= 0.5).astype(np.uint8) if mask.dtype.kind == "f" else (mask != 0).astype(np.uint8)
    return paste_back(mask, info)


def volume_to_input(volume, info: CropInfo | None) -> np.ndarray:
    """A model-grid float volume (probability, variance) resampled linearly onto the input grid."""
    volume = np.asarray(volume, np.float32)
    if info is None:
        return volume
    return resample(volume, info.source_shape, info.source_affine, info.crop_affine, 1).astype(np.float32)
