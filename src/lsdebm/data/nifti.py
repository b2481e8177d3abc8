"""NIfTI input/output that keeps the affine, and cropping to / pasting from the model grid.

A real file (a binary mask or a multi-label map such as VerSe or TotalSegmentator output)
is read with its affine; one vertebra is cropped around its centroid and resampled into the
model frame (:func:`lsdebm.data.phantoms.grid_affine`: a cubic grid at the model spacing
whose axes point superior, posterior, right). A result on the model grid is pasted back
into the original grid and written with the original affine and header.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from lsdebm.data.pose import WORLD_AXES, frame_affine, pose_for
from lsdebm.data.validate import (check_affine, check_compression, foreground, one_line, squeeze_shape,
                                  voxel_itemsize)
from lsdebm.errors import InputError, InputWarning
from lsdebm.fileio import atomic_write
from lsdebm.limits import array_bytes, check_memory

NIFTI_SUFFIXES = (".nii", ".nii.gz")
SPACING_RANGE_MM = (0.05, 20.0)


@dataclass(frozen=True)
class Volume:
    """A 3D volume read from a NIfTI file.

    Attributes:
        data: The voxel array (3D).
        affine: 4x4 voxel-to-world (RAS+, mm) affine.
        header: The NIfTI header (reuse it when writing results).
        spacing: Voxel size in mm per array axis (column norms of the affine).
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    spacing: tuple


def affine_spacing(affine: np.ndarray) -> tuple:
    """Voxel size in mm per array axis: the norms of the affine's first three columns."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a 3D NIfTI file, keeping its affine and header.

    Checks, in order, before any voxel is read: the file exists and is a file, has a NIfTI
    name, is not empty, its gzip-ness matches its name, nibabel can parse the header, the
    voxel type is integer/boolean/real, the volume is 3D (trailing singleton 4th/5th axes are
    dropped with an :class:`InputWarning`), the array fits the memory limit
    (:func:`lsdebm.limits.check_memory`) and the affine is finite and invertible. Then the
    voxels are read and must be finite. A spacing outside 0.05-20 mm (usually a units error in
    the header) and a non-orthogonal (sheared) affine are accepted with an :class:`InputWarning`.

    Raises:
        InputError: For every problem above; the message names the file, the problem and
            what is expected, on one line.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory; expected a NIfTI .nii or .nii.gz file")
    if not path.is_file():
        raise InputError(f"{path}: file not found (expected a NIfTI .nii or .nii.gz file)")
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise InputError(f"{path}: not a NIfTI file name (expected .nii or .nii.gz)")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (expected a NIfTI volume)")
    check_compression(path)
    try:
        image = nib.load(str(path), mmap=False)
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            raise TypeError(f"a {type(image).__name__} file, not NIfTI")
        shape = tuple(int(v) for v in image.header.get_data_shape())
        affine = np.asarray(image.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises many types for broken headers
        raise InputError(f"{path}: cannot read as NIfTI ({one_line(exc)}); expected an intact NIfTI-1 or NIfTI-2 "
                         "file") from None
    itemsize = voxel_itemsize(path, image.header)
    shape3 = squeeze_shape(path, shape)
    check_memory(array_bytes(shape, itemsize), f"{path}: a {'x'.join(map(str, shape3))} volume")
    affine = check_affine(affine, str(path))
    if not path.name.endswith(".gz"):  # an uncompressed file's size is known: report truncation exactly
        need = int(getattr(image.dataobj, "offset", 0)) + array_bytes(shape, image.header.get_data_dtype().itemsize)
        if path.stat().st_size < need:
            raise InputError(f"{path}: file is truncated ({path.stat().st_size} bytes; the header needs {need}); "
                             "expected the complete volume")
    try:
        data = np.asarray(image.dataobj).reshape(shape3)
    except Exception as exc:  # truncated data, bad gzip stream, short reads
        raise InputError(f"{path}: voxel data cannot be read ({one_line(exc)}); the file is truncated or "
                         "corrupt, expected the complete volume") from None
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            n_nan = int(np.isnan(data).sum())
            n_inf = int(data.size - finite.sum()) - n_nan
            raise InputError(f"{path}: volume contains {n_nan} NaN and {n_inf} infinite values; expected finite "
                             "values (a binary mask, label map or probability map)")
    spacing = affine_spacing(affine)
    lo, hi = SPACING_RANGE_MM
    if not all(lo <= s <= hi for s in spacing):
        warnings.warn(f"{path}: voxel spacing {tuple(round(s, 6) for s in spacing)} mm is outside {lo}-{hi} mm; "
                      "check the header's units (results are resampled with this spacing)", InputWarning,
                      stacklevel=2)
    columns = affine[:3, :3] / np.asarray(spacing)
    if not np.allclose(columns.T @ columns, np.eye(3), atol=1e-4):
        warnings.warn(f"{path}: the affine is not orthogonal (sheared); resampling uses the full affine, "
                      "outputs keep it in the sform (the qform can only approximate it)", InputWarning,
                      stacklevel=2)
    return Volume(data=data, affine=affine, header=image.header, spacing=spacing)


def compact_int_dtype(data: np.ndarray) -> np.dtype:
    """The smallest of uint8/int16/int32/int64 holding every value of an integer array."""
    lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
    for dtype in (np.uint8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def write_volume(path, data, affine, header=None, overwrite: bool = False):
    """Write ``data`` as NIfTI with ``affine`` (and ``header`` if given), atomically.

    Nothing is written on an error; an existing file is kept unless ``overwrite``.

    Raises:
        LsdebmError: If the file exists and ``overwrite`` is False, or cannot be written.
        InputError: If the name is not .nii/.nii.gz, the data is not 3D or of a type NIfTI
            cannot store, or the affine is not finite and invertible.
    """
    path = Path(path)
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise InputError(f"{path}: output name must end with .nii or .nii.gz")
    data = np.asarray(data)
    if data.ndim != 3:
        raise InputError(f"{path}: can only write 3D volumes, got shape {data.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype == np.float16:
        data = data.astype(np.float32)
    if data.dtype.kind not in "iuf":
        raise InputError(f"{path}: cannot store {data.dtype} voxels; expected integer or real values")
    if data.dtype.kind in "iu" and data.dtype.itemsize == 8:  # nibabel refuses implicit 64-bit ints
        data = data.astype(compact_int_dtype(data))
    affine = check_affine(affine, str(path))
    header = header.copy() if header is not None else None
    image = nib.Nifti1Image(data, affine, header, dtype=data.dtype)
    image.set_data_dtype(data.dtype)
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    return atomic_write(path, lambda tmp: nib.save(image, str(tmp)), overwrite=overwrite)


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


def _resample(data: np.ndarray, out_shape, out_affine, in_affine, order: int) -> np.ndarray:
    """Sample ``data`` (grid ``in_affine``) on the grid ``out_affine`` of ``out_shape``."""
    matrix = np.linalg.inv(in_affine) @ out_affine
    return ndimage.affine_transform(
        data, matrix, output_shape=tuple(out_shape), order=order, mode="constant", cval=0.0
    )


def _fraction(binary: np.ndarray, affine, crop_affine, grid: int) -> np.ndarray:
    """Share of each model voxel covered by ``binary``: the mean of 2x2x2 linear sub-samples."""
    sub = np.diag([0.5, 0.5, 0.5, 1.0])
    sub[:3, 3] = -0.25  # sub-sample j sits at model index (j - 0.5) / 2
    fine = _resample(binary.astype(np.float32), (2 * grid,) * 3, crop_affine @ sub, affine, order=1)
    return np.clip(fine.reshape(grid, 2, grid, 2, grid, 2).mean(axis=(1, 3, 5)), 0.0, 1.0).astype(np.float32)


def crop_label(data, affine, label: int | None = None, grid: int = 64, spacing: float = 2.0, offset_mm=None,
               frame: str = "world", values: str = "binary"):
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
            e.g. where the training phantoms have theirs (:func:`lsdebm.tasks.reconstruct.model_offset_mm`);
            None puts the centroid at the crop centre. With ``frame='pose'`` the same vector is
            taken along the structure's own axes.
        frame: ``world`` crops along the scanner axes; ``pose`` along the structure's anatomical
            frame (:func:`lsdebm.data.pose.estimate_pose`), so a tilted vertebra reaches the model
            upright; :func:`paste_back` undoes either through the crop affine.
        values: ``binary`` (linear resampling thresholded at 0.5) or ``fraction`` (the share of
            each model voxel inside the structure, from 2x2x2 linear sub-samples).

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
    binary = foreground(data, label)
    where = f"label {label}" if label is not None else "the structure"
    voxels = np.argwhere(binary)
    pose = pose_for(frame, binary, affine)
    centroid_mm = pose.centroid_mm
    offset = np.zeros(3) if offset_mm is None else WORLD_AXES.T @ np.asarray(offset_mm, dtype=np.float64)
    crop_affine = frame_affine(pose, grid, spacing, offset)
    touching = [axis for axis in range(3) if voxels[:, axis].min() == 0
                or voxels[:, axis].max() == data.shape[axis] - 1]
    if touching:
        warnings.warn(f"{where} touches the volume border along axis {touching}; it may be cut off "
                      "(the crop is padded with background)", InputWarning, stacklevel=2)
    in_crop = (np.linalg.inv(crop_affine) @ affine)[:3]
    coords = voxels @ in_crop[:, :3].T + in_crop[:, 3]
    if coords.min() < -0.5 or coords.max() > grid - 0.5:
        reach = float(np.abs(coords - (grid - 1) / 2).max() * spacing)
        warnings.warn(f"{where} reaches {reach:.0f} mm from the crop centre, beyond the model's field of view "
                      f"(+-{grid * spacing / 2:g} mm); the parts outside are cut off", InputWarning, stacklevel=2)
    if values == "fraction":
        crop = _fraction(binary, affine, crop_affine, grid)
    else:
        crop = (_resample(binary.astype(np.float32), (grid,) * 3, crop_affine, affine, order=1) >= 0.5).astype(np.uint8)
    if not (crop >= 0.5).any():
        raise InputError(f"{where} ({len(voxels)} voxels of {tuple(round(v, 4) for v in affine_spacing(affine))}"
                         f" mm) is smaller than one {spacing:g} mm model voxel; check the file's spacing (units?)")
    info = CropInfo(tuple(data.shape), affine, crop_affine, label, tuple(float(v) for v in centroid_mm), pose.method,
                    round(pose.tilt_deg(), 2))
    return crop, info


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
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in crop_result.shape], indexing="ij")).reshape(3, -1)
    world = info.crop_affine[:3, :3] @ corners + info.crop_affine[:3, 3:4]
    inv = np.linalg.inv(target)
    src = inv[:3, :3] @ world + inv[:3, 3:4]
    lo = np.clip(np.floor(src.min(1)).astype(int) - 1, 0, shape)
    hi = np.clip(np.ceil(src.max(1)).astype(int) + 2, 0, shape)
    out = np.zeros(shape, dtype=np.float32)
    if np.all(hi > lo):
        box_affine = target.copy()
        box_affine[:3, 3] = target[:3, :3] @ lo + target[:3, 3]
        out[tuple(slice(a, b) for a, b in zip(lo, hi))] = _resample(crop_result, hi - lo, box_affine,
                                                                     info.crop_affine, order=1)
    return out


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
            of it (other labels are kept). Without it a uint8 {0, 1} mask is returned.

    Returns:
        An array with the original shape: the pasted mask, or the updated label map.
    """
    if base is not None and np.shape(base) != tuple(info.source_shape):
        raise InputError(f"base volume has shape {np.shape(base)}; expected the cropped volume's {info.source_shape}")
    pasted = paste_probabilities(crop_result, info) >= 0.5
    if base is None:
        return pasted.astype(np.uint8)
    return replace_label(base, pasted, info.label)
