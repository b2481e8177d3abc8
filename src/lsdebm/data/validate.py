"""Validation of user volumes: affines, NIfTI headers, foreground selection.

Every check raises :class:`lsdebm.errors.InputError` with a one-line message naming the file
(or value), the problem and what is expected, or warns with :class:`InputWarning` when the
input is usable after a stated change (squeezed axes, thresholded probabilities, ...).
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np

from lsdebm.errors import InputError, InputWarning

GZIP_MAGIC = b"\x1f\x8b"


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (nibabel's messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def is_number(value) -> bool:
    """Whether ``value`` is one finite real number (Python or numpy; not a bool, string, None or sequence)."""
    return (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
            and math.isfinite(value))


#: The largest seed numpy's and torch's generators both take (seeds are 0 <= seed < 2**63).
MAX_SEED = 2**63 - 1


def seed_ok(seed) -> bool:
    """Whether ``seed`` is a whole number numpy's and torch's generators both take."""
    return not isinstance(seed, bool) and isinstance(seed, (int, np.integer)) and 0 <= int(seed) <= MAX_SEED


def as_path(value, name: str, hint: str = "") -> Path:
    """``value`` as a Path when it is a file path (a str or an os.PathLike naming a str path); else one line naming
    ``name`` and the type it got (None, bytes, an array or an image reached ``Path()`` as a bare TypeError).
    ``hint`` is appended to the message (e.g. the function's argument order)."""
    if isinstance(value, (str, os.PathLike)):
        try:
            text = os.fspath(value)
        except TypeError:
            text = None
        if isinstance(text, str):
            return Path(text)
    got = type(value).__name__ + (" (decode it to a str)" if isinstance(value, (bytes, bytearray)) else "")
    raise InputError(f"{name}: expected a file path (str or os.PathLike), got {got}{hint}")


def range_checked(owner: str, name: str, value, lo: float, hi: float, unit: str = "") -> float:
    """``value`` as a float when it is one number in [lo, hi]; else one line naming ``owner.name``, the value and
    the range (a string, None or NaN was a bare TypeError or passed the comparison)."""
    if not (is_number(value) and lo <= value <= hi):
        raise InputError(f"{owner}.{name}={value!r:.60}: expected a number{unit} in [{lo}, {hi}]")
    return float(value)


def check_affine(affine, name: str = "affine") -> np.ndarray:
    """Return ``affine`` as a float64 4x4 array; refuse non-finite or singular ones.

    A non-orthogonal (sheared) affine is accepted: resampling uses the full matrix.

    Raises:
        InputError: If it is not numeric or not 4x4, has NaN/inf, or a zero-volume (singular) 3x3 part.
    """
    if affine is None:
        raise InputError(f"{name}: no affine (None); expected a 4x4 voxel-to-world matrix")
    try:
        affine = np.asarray(affine, dtype=np.float64)
    except (TypeError, ValueError):
        shown = " ".join(repr(affine).split())[:60]
        raise InputError(f"{name}: affine {shown} is not a 4x4 matrix of numbers; expected a voxel-to-world matrix, "
                         "e.g. np.diag([sx, sy, sz, 1])") from None
    if affine.shape != (4, 4):
        raise InputError(f"{name}: affine has shape {affine.shape}; expected 4x4")
    if not np.all(np.isfinite(affine)):
        raise InputError(f"{name}: affine contains NaN or infinite values; expected a finite voxel-to-world matrix")
    if not np.array_equal(affine[3], [0.0, 0.0, 0.0, 1.0]):
        raise InputError(f"{name}: affine's last row is {affine[3].tolist()}; expected [0, 0, 0, 1]")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(spacing <= 0) or abs(np.linalg.det(affine[:3, :3])) <= 1e-12 * np.prod(spacing):
        raise InputError(f"{name}: affine is singular (voxel spacing {tuple(round(float(v), 6) for v in spacing)} mm "
                         "or collapsed axes); expected an invertible voxel-to-world matrix")
    return affine


def looks_like_nifti(head: bytes) -> bool:
    """Whether the first bytes of a file are an uncompressed NIfTI-1 or NIfTI-2 header (size field and magic)."""
    sizes = {int.from_bytes(head[:4], order) for order in ("little", "big")} if len(head) >= 4 else set()
    return ((348 in sizes and head[344:347] in (b"n+1", b"ni1")) or (540 in sizes and head[4:7] in (b"n+2", b"ni2")))


def check_compression(path: Path) -> None:
    """Refuse a name whose .gz suffix disagrees with the gzip magic bytes (a common mix-up); suggest renaming only
    a file that is an uncompressed NIfTI image."""
    with open(path, "rb") as handle:
        head = handle.read(352)
    gzipped = head[:2] == GZIP_MAGIC
    if path.name.endswith(".gz") and not gzipped:
        if looks_like_nifti(head):
            raise InputError(f"{path}: named .nii.gz but not gzip-compressed; expected a gzip file "
                             "(it is an uncompressed NIfTI image: rename it to .nii)")
        raise InputError(f"{path}: named .nii.gz but neither gzip-compressed nor a NIfTI image; "
                         "expected a NIfTI file (.nii or .nii.gz)")
    if not path.name.endswith(".gz") and gzipped:
        raise InputError(f"{path}: gzip-compressed but named .nii; expected an uncompressed file "
                         "(rename it to .nii.gz)")


def squeeze_shape(path: Path, shape: tuple) -> tuple:
    """Drop trailing singleton axes beyond the third (with a warning); refuse anything else not 3D."""
    squeezed = tuple(shape)
    while len(squeezed) > 3 and squeezed[-1] == 1:
        squeezed = squeezed[:-1]
    if len(squeezed) != 3:
        what = {1: "1D", 2: "2D image"}.get(len(squeezed), f"{len(squeezed)}D volume")
        raise InputError(f"{path}: {what} of shape {tuple(shape)}; expected a single 3D volume "
                         "(4D/5D files are accepted only when their extra axes have length 1)")
    if squeezed != tuple(shape):
        warnings.warn(f"{path}: {len(shape)}D shape {tuple(shape)} squeezed to 3D {squeezed} "
                      "(trailing axes of length 1 dropped)", InputWarning, stacklevel=3)
    if 0 in squeezed:
        raise InputError(f"{path}: shape {squeezed} has an axis of length 0; expected a non-empty 3D volume")
    return squeezed


def read_scaling(image) -> tuple[float, float]:
    """The ``scl_slope``, ``scl_inter`` nibabel applies as it reads a loaded image's voxels ((1.0, 0.0): none).

    ``nib.load`` moves them out of the header (whose ``get_slope_inter()`` then says ``(None, None)``) into the
    data proxy, ``image.dataobj.slope`` / ``.inter``.
    """
    return tuple(float(getattr(image.dataobj, key, default)) for key, default in (("slope", 1.0), ("inter", 0.0)))


def whole_number_scaling(stored: np.dtype, slope: float, inter: float) -> bool:
    """Whether integer voxels of type ``stored`` are scaled by a whole-number ``slope``/``inter`` (a scaled label
    map, which :func:`lsdebm.data.nifti.read_volume` reads as integers)."""
    return stored.kind in "iu" and (slope, inter) != (1.0, 0.0) \
        and all(math.isfinite(v) and v.is_integer() for v in (slope, inter))


def scaled_ends(lo: int, hi: int, slope: float, inter: float) -> tuple[int, int] | None:
    """The lowest and highest ``v * slope + inter`` over whole numbers ``v`` in [lo, hi], computed exactly; None when
    it, or a step of it (slope, inter, the products), leaves int64."""
    products = sorted((int(lo) * int(slope), int(hi) * int(slope)))
    ends = [v + int(inter) for v in products]
    wide = np.iinfo(np.int64)
    if not all(wide.min <= v <= wide.max for v in (int(slope), int(inter), *products, *ends)):
        return None
    return ends[0], ends[1]


def voxel_itemsize(path: Path, image) -> int:
    """Bytes per voxel of the array :func:`lsdebm.data.nifti.read_volume` returns, as far as the header tells;
    refuse unsupported types.

    Unscaled voxels keep their stored size. A whole-number scaling of integers keeps it too (the scaled values are
    kept in the stored type when they fit; a wider type, known only once the voxels are read, is checked then);
    8 when the scaled stored range could leave int64. Any other scaling is read as float64: 8.
    """
    dtype = np.dtype(image.get_data_dtype())
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise InputError(f"{path}: voxel type {dtype} is not supported; expected integer, boolean or real values "
                         "(a mask, label map or probability map)")
    slope, inter = read_scaling(image)
    if (slope, inter) == (1.0, 0.0):
        return dtype.itemsize
    if whole_number_scaling(dtype, slope, inter):
        info = np.iinfo(dtype)
        if scaled_ends(info.min, info.max, slope, inter) is not None:
            return dtype.itemsize
    return 8


def check_mask(mask, name: str = "mask") -> np.ndarray:
    """Return ``mask`` as a boolean foreground array (nonzero = foreground).

    A torch tensor is detached and copied to the CPU first (one that requires grad is a model's output).

    Raises:
        InputError: If it is not a rectangular array (a ragged list) or has no axis (a single value), or its
            values are not boolean, integer or real, are NaN/infinite, or negative (a label map's labels are
            non-negative).
    """
    if callable(getattr(mask, "detach", None)) and callable(getattr(mask, "cpu", None)):
        mask = mask.detach().cpu()  # torch: numpy() refuses a tensor that requires grad or lives on a GPU
    try:
        mask = np.asarray(mask)
    except (TypeError, ValueError):
        raise InputError(f"{name} is not a rectangular array (nested rows of different lengths?); expected a binary "
                         "mask or a label map of one shape") from None
    if mask.ndim == 0:
        raise InputError(f"{name} is a single value ({mask!r:.40}), not an array of voxels; expected a 2D or 3D "
                         "binary mask or label map")
    kind = mask.dtype.kind
    if kind == "b":
        return mask
    if kind not in "iuf":
        raise InputError(f"{name} has values of type {mask.dtype}; expected a boolean or integer mask, "
                         "or a label map with non-negative labels")
    if kind == "f" and not np.all(np.isfinite(mask)):
        n_nan = int(np.count_nonzero(np.isnan(mask)))
        n_inf = int(np.count_nonzero(np.isinf(mask)))
        raise InputError(f"{name} contains {n_nan} NaN and {n_inf} infinite values; expected finite values "
                         "(a binary mask or a label map with non-negative labels)")
    if kind in "if" and mask.size and mask.min() < 0:
        raise InputError(f"{name} has negative values (minimum {mask.min():g}); expected a binary mask or a "
                         "label map with non-negative labels")
    return mask > 0


def foreground(data: np.ndarray, label: int | None) -> np.ndarray:
    """The voxels to crop: ``label``, or all nonzero voxels (with a warning for label maps).

    Without a label, a real-valued map with values other than 0 and 1 (a probability map) is
    thresholded at 0.5, and a map holding several labels is taken as one structure; both are
    reported with an :class:`InputWarning` that says how to choose one label instead.
    """
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise InputError("the volume contains NaN or infinite values; expected a finite mask, label map or "
                         "probability map")
    if label is not None:
        binary = data == label
        if not binary.any():
            present = [int(v) for v in np.unique(data) if v != 0][:20]
            raise InputError(f"label {label} not found in the volume; labels present: {present or 'none'}")
        return binary
    binary = data != 0
    if not binary.any():
        raise InputError("the volume has no foreground voxels (all zero); expected a non-empty mask or label map")
    if data.dtype.kind == "b":
        return binary
    values = np.unique(data[binary])
    if data.dtype.kind == "f" and not np.all(values == np.round(values)):
        binary = data >= 0.5
        warnings.warn(f"values between 0 and 1 (a probability map?) were thresholded at 0.5 "
                      f"({int(binary.sum())} voxels kept)", InputWarning, stacklevel=3)
        if not binary.any():
            raise InputError("no voxel is >= 0.5; expected a mask, label map or probability map with foreground")
    elif values.size > 1:
        shown = ", ".join(f"{v:g}" for v in values[:10]) + (", ..." if values.size > 10 else "")
        warnings.warn(f"the volume holds {values.size} labels ({shown}); all nonzero voxels are cropped as one "
                      "structure (pass a label, e.g. --label, to crop one)", InputWarning, stacklevel=3)
    return binary


def require_one_structure(data: np.ndarray, label: int | None, what: str, action: str) -> None:
    """Refuse an integer map of several labels (a VerSe or TotalSegmentator spine) when no ``label`` picks one:
    "``what`` holds N labels (...); choose the structure to ``action`` by its label"."""
    data = np.asarray(data)
    if label is not None or data.dtype.kind not in "biu" or not data.any():
        return
    from lsdebm.data.label_census import present_labels  # its census counts in chunks (a whole-body map)

    present = present_labels(data)
    if len(present) > 1:
        raise several_labels(what, present, action)


def several_labels(what: str, present: list[int], action: str) -> InputError:
    """The refusal of :func:`require_one_structure`, for callers that already hold the labels present."""
    listed = ", ".join(map(str, present[:8])) + (", ..." if len(present) > 8 else "")
    return InputError(f"{what} holds {len(present)} labels ({listed}); choose the structure to {action} by its label")
