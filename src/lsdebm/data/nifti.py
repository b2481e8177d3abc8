"""NIfTI input/output that keeps the affine, and cropping to / pasting from the model grid.

A real file (a binary mask or a multi-label map such as VerSe or TotalSegmentator output)
is read with its affine; one vertebra is cropped around its centroid and resampled into the
model frame (:func:`lsdebm.data.phantoms.grid_affine`: a cubic grid at the model spacing
whose axes point superior, posterior, right). A result on the model grid is pasted back
into the original grid and written with the original affine and header.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from lsdebm.data.phantoms import grid_affine
from lsdebm.errors import InputError
from lsdebm.fileio import atomic_write

NIFTI_SUFFIXES = (".nii", ".nii.gz")


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

    Raises:
        InputError: If the file is missing, empty, not NIfTI, corrupt, not 3D (a trailing
            singleton 4th axis is dropped) or contains NaN; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found (expected a NIfTI .nii or .nii.gz file)")
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise InputError(f"{path}: not a NIfTI file name (expected .nii or .nii.gz)")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (expected a NIfTI volume)")
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types for broken files
        raise InputError(f"{path}: cannot read as NIfTI ({exc})") from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3D volume, got shape {data.shape}")
    if data.dtype.kind == "f" and np.isnan(data).any():
        raise InputError(f"{path}: volume contains NaN values (expected a finite mask or label map)")
    affine = np.asarray(image.affine, dtype=np.float64)
    return Volume(data=data, affine=affine, header=image.header, spacing=affine_spacing(affine))


def write_volume(path, data, affine, header=None, overwrite: bool = False):
    """Write ``data`` as NIfTI with ``affine`` (and ``header`` if given), atomically.

    Raises:
        LsdebmError: If the file exists and ``overwrite`` is False.
        InputError: If the name is not .nii/.nii.gz or the data is not 3D.
    """
    path = Path(path)
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise InputError(f"{path}: output name must end with .nii or .nii.gz")
    data = np.asarray(data)
    if data.ndim != 3:
        raise InputError(f"{path}: can only write 3D volumes, got shape {data.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    header = header.copy() if header is not None else None
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64), header)
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
    """

    source_shape: tuple
    source_affine: np.ndarray
    crop_affine: np.ndarray
    label: int | None
    centroid_mm: tuple


def _resample(data: np.ndarray, out_shape, out_affine, in_affine, order: int) -> np.ndarray:
    """Sample ``data`` (grid ``in_affine``) on the grid ``out_affine`` of ``out_shape``."""
    matrix = np.linalg.inv(in_affine) @ out_affine
    return ndimage.affine_transform(
        data, matrix, output_shape=tuple(out_shape), order=order, mode="constant", cval=0.0
    )


def crop_label(data, affine, label: int | None = None, grid: int = 64, spacing: float = 2.0):
    """Crop one structure around its centroid and resample it to the model grid.

    Args:
        data: 3D mask or label map.
        affine: Its voxel-to-world affine (any orientation, anisotropic allowed).
        label: Label id to crop; None takes every nonzero voxel.
        grid: Model grid size per axis.
        spacing: Model spacing in mm.

    Returns:
        ``(crop, info)``: a uint8 {0, 1} array of shape (grid,)*3 in the model frame and
        the :class:`CropInfo` needed to paste a result back.

    Raises:
        InputError: If the data is not 3D or the label is absent.
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise InputError(f"expected a 3D volume, got shape {data.shape}")
    binary = data == label if label is not None else data != 0
    if not binary.any():
        present = [int(v) for v in np.unique(data) if v != 0][:20]
        raise InputError(f"label {label} not found in the volume; labels present: {present or 'none'}")
    affine = np.asarray(affine, dtype=np.float64)
    centroid_vox = np.argwhere(binary).mean(0)
    centroid_mm = affine[:3, :3] @ centroid_vox + affine[:3, 3]
    crop_affine = grid_affine(grid, spacing, centroid_mm)
    crop = _resample(binary.astype(np.float32), (grid,) * 3, crop_affine, affine, order=1)
    info = CropInfo(tuple(data.shape), affine, crop_affine, label, tuple(float(v) for v in centroid_mm))
    return (crop >= 0.5).astype(np.uint8), info


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
    crop_result = np.asarray(crop_result, dtype=np.float32)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in crop_result.shape], indexing="ij")).reshape(3, -1)
    world = info.crop_affine[:3, :3] @ corners + info.crop_affine[:3, 3:4]
    inv = np.linalg.inv(info.source_affine)
    src = inv[:3, :3] @ world + inv[:3, 3:4]
    lo = np.clip(np.floor(src.min(1)).astype(int) - 1, 0, info.source_shape)
    hi = np.clip(np.ceil(src.max(1)).astype(int) + 2, 0, info.source_shape)
    pasted = np.zeros(info.source_shape, dtype=bool)
    if np.all(hi > lo):
        box_affine = info.source_affine.copy()
        box_affine[:3, 3] = info.source_affine[:3, :3] @ lo + info.source_affine[:3, 3]
        values = _resample(crop_result, hi - lo, box_affine, info.crop_affine, order=1)
        pasted[tuple(slice(a, b) for a, b in zip(lo, hi))] = values >= 0.5
    if base is None:
        return pasted.astype(np.uint8)
    out = np.array(base, copy=True)
    value = 1 if info.label is None else info.label
    if info.label is not None:
        out[out == info.label] = 0
    out[pasted] = value
    return out
