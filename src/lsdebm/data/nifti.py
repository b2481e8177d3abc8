"""NIfTI input/output that keeps the affine and header.

A real file (a binary mask or a multi-label map such as VerSe or TotalSegmentator output)
is read with its affine; results are written with the original affine and header. Moving a
structure to and from the model grid lives in :mod:`lsdebm.data.frame`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from lsdebm.data.frame import affine_spacing
from lsdebm.data.validate import (
    as_path,
    check_affine,
    check_compression,
    one_line,
    read_scaling,
    scaled_ends,
    squeeze_shape,
    voxel_itemsize,
    whole_number_scaling,
)
from lsdebm.errors import InputError, InputWarning
from lsdebm.fileio import atomic_write
from lsdebm.limits import array_bytes, check_memory

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: What :func:`read_volume` suggests for an argument that is no path (an image already loaded, an array).
READ_HINT = ("; read_volume reads a NIfTI file from disk (for an image in memory use its get_fdata() and affine, "
             "or save it with nibabel.save first)")
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


def _check_file(path: Path) -> None:
    """One-line errors for a missing, misnamed, empty or wrongly (un)compressed file."""
    if path.is_dir():
        raise InputError(f"{path}: is a directory; expected a NIfTI .nii or .nii.gz file")
    if not path.is_file():
        if path.exists():  # a FIFO, socket or device: reading it could block or never end
            raise InputError(f"{path}: not a regular file (a pipe, socket or device); expected a NIfTI .nii or "
                             ".nii.gz file on disk")
        raise InputError(f"{path}: file not found (expected a NIfTI .nii or .nii.gz file)")
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise InputError(f"{path}: not a NIfTI file name (expected .nii or .nii.gz)")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (expected a NIfTI volume)")
    check_compression(path)


_NIBABEL_LOG = logging.getLogger("nibabel.global")  # header fixes nibabel makes while reading, printed bare
_NIBABEL_LOG_LOCK = threading.Lock()


class _Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _header_fixes_as_warnings(path: Path):
    """nibabel's reports on a header it fixes as it reads (``pixdim[1,2,3] should be positive; setting to abs of
    pixdim values``), printed on stderr by nibabel's own handler, become one :class:`InputWarning` each, naming the
    file."""
    collected = _Collected()
    with _NIBABEL_LOG_LOCK:
        handlers, _NIBABEL_LOG.handlers = _NIBABEL_LOG.handlers, [collected]
        try:
            yield
        finally:
            _NIBABEL_LOG.handlers = handlers
    for message in dict.fromkeys(m for m in collected.messages if m.strip()):
        warnings.warn(f"{path}: {' '.join(message.split())} (nibabel fixed the header as it read it)", InputWarning,
                      stacklevel=4)


def _read_header(path: Path):
    """The parsed NIfTI image (voxels not read yet), its stored shape and float64 affine."""
    try:
        with _header_fixes_as_warnings(path):
            image = nib.load(str(path), mmap=False)
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            raise TypeError(f"a {type(image).__name__} file, not NIfTI")
        shape = tuple(int(v) for v in image.header.get_data_shape())
        affine = np.asarray(image.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises many types for broken headers
        raise InputError(f"{path}: cannot read as NIfTI ({one_line(exc)}); expected an intact NIfTI-1 or NIfTI-2 "
                         "file") from None
    return image, shape, affine


def _check_finite(path: Path, data: np.ndarray) -> None:
    """A one-line error counting the NaN and infinite voxels of a real-valued volume."""
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            n_nan = int(np.isnan(data).sum())
            n_inf = int(data.size - finite.sum()) - n_nan
            raise InputError(f"{path}: volume contains {n_nan} NaN and {n_inf} infinite values; expected finite "
                             "values (a binary mask, label map or probability map)")


def _integer_scaled(image, what: str) -> np.ndarray | None:
    """Integer voxels whose ``scl_slope``/``scl_inter`` are whole numbers, scaled exactly into an integer type.

    nibabel returns every scaled volume as float64: a uint8 label map stored with ``scl_slope`` 2 was read as
    floats and its reconstruction written as a float64 file. Its labels are whole numbers, so they stay integers:
    in the stored type where it holds them, else the smallest integer type that does. The scaling is done in place
    in that type (in a wider one only where a step needs it), and a type wider than the stored one is checked
    against the memory limit first, as ``what``: :func:`voxel_itemsize` counted the stored size. None: no such
    scaling (or one beyond int64); nibabel's reading is kept.
    """
    stored = np.dtype(image.get_data_dtype())
    slope, inter = read_scaling(image)
    if not whole_number_scaling(stored, slope, inter):
        return None
    raw = np.asarray(image.dataobj.get_unscaled())
    lo, hi = (int(raw.min()), int(raw.max())) if raw.size else (0, 0)
    ends = scaled_ends(lo, hi, slope, inter)
    if ends is None:
        return None
    dtype = stored if _holds(stored, ends) else compact_int_dtype(np.array(ends))
    steps = (lo * int(slope), hi * int(slope), int(slope), int(inter), *ends)
    work = dtype if _holds(dtype, steps) else compact_int_dtype(np.array(steps))
    if work.itemsize > stored.itemsize:
        check_memory(array_bytes(raw.shape, work.itemsize), what)
    out = raw.astype(work)
    out *= int(slope)
    out += int(inter)
    return out.astype(dtype, copy=False)


def _holds(dtype: np.dtype, values) -> bool:
    """Whether the integer type ``dtype`` holds every one of ``values``."""
    info = np.iinfo(dtype)
    return all(info.min <= v <= info.max for v in values)


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a 3D NIfTI file, keeping its affine and header.

    Checks, in order, before any voxel is read: the file exists and is a file, has a NIfTI
    name, is not empty, its gzip-ness matches its name, nibabel can parse the header, the
    voxel type is integer/boolean/real, the volume is 3D (trailing singleton 4th/5th axes are
    dropped with an :class:`InputWarning`), the array fits the memory limit
    (:func:`lsdebm.limits.check_memory`) and the affine is finite and invertible. Then the
    voxels are read and must be finite. A spacing outside 0.05-20 mm (usually a units error in
    the header) and a non-orthogonal (sheared) affine are accepted with an :class:`InputWarning`.
    Integer voxels under a whole-number ``scl_slope``/``scl_inter`` (a scaled label map) come back
    as integers holding the scaled values; other scaled voxels as float64.

    Raises:
        InputError: For every problem above, and for a ``path`` that is not a str or os.PathLike (an
            in-memory image or array); the message names the file, the problem and what is expected, on one line.
    """
    path = as_path(path, "read_volume path", READ_HINT)
    _check_file(path)
    image, shape, affine = _read_header(path)
    itemsize = voxel_itemsize(path, image)
    shape3 = squeeze_shape(path, shape)
    what = f"{path}: a {'x'.join(map(str, shape3))} volume"
    check_memory(array_bytes(shape, itemsize), what)
    affine = check_affine(affine, str(path))
    if not path.name.endswith(".gz"):  # an uncompressed file's size is known: report truncation exactly
        need = int(getattr(image.dataobj, "offset", 0)) + array_bytes(shape, image.header.get_data_dtype().itemsize)
        if path.stat().st_size < need:
            raise InputError(f"{path}: file is truncated ({path.stat().st_size} bytes; the header needs {need}); "
                             "expected the complete volume")
    try:
        data = _integer_scaled(image, what)
        data = (np.asarray(image.dataobj) if data is None else data).reshape(shape3)
    except InputError:  # the memory limit, for a scaled label map whose ids need a wider type
        raise
    except Exception as exc:  # truncated data, bad gzip stream, short reads
        raise InputError(f"{path}: voxel data cannot be read ({one_line(exc)}); the file is truncated or "
                         "corrupt, expected the complete volume") from None
    _check_finite(path, data)
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


def read_grid(path: str | os.PathLike) -> tuple[tuple[int, int, int], np.ndarray]:
    """The voxel grid ``(shape, affine)`` of a NIfTI file from its header alone (no voxel is read).

    For a file whose grid is all that matters (``--like``): a 4D series (a DWI or fMRI run of the same subject)
    lends its first three axes. The same file checks as :func:`read_volume` up to the header, and the affine must
    be finite and invertible.

    Raises:
        InputError: One line naming the file, the problem and what is expected.
    """
    path = Path(path)
    _check_file(path)
    _, shape, affine = _read_header(path)
    if len(shape) < 3 or 0 in shape[:3]:
        raise InputError(f"{path}: shape {tuple(shape)}; expected an image with three spatial axes (a 3D or 4D NIfTI)")
    return (int(shape[0]), int(shape[1]), int(shape[2])), check_affine(affine, str(path))


def compact_int_dtype(data: np.ndarray) -> np.dtype:
    """The smallest of uint8/int16/int32/int64 holding every value of an integer array; uint64 for values beyond
    int64 (casting them to int64 wrapped them to negative numbers)."""
    lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
    for dtype in (np.uint8, np.int16, np.int32, np.int64):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


#: What :func:`write_volume` adds when its first argument is no path (often the arguments swapped).
WRITE_HINT = "; the arguments are write_volume(path, data, affine)"


def _writable_data(path: Path, data) -> np.ndarray:
    """``data`` as an array NIfTI stores as it is, or one line naming ``path`` and what is wrong (never a file
    read_volume would refuse)."""
    data = np.asarray(data)
    if data.ndim != 3 or 0 in data.shape:
        raise InputError(f"{path}: can only write non-empty 3D volumes, got shape {data.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype == np.float16:
        data = data.astype(np.float32)
    if data.dtype.kind not in "iuf" or data.dtype.itemsize > 8:
        raise InputError(f"{path}: cannot store {data.dtype} voxels; expected integer or real values "
                         "(at most 64-bit, e.g. uint8, int32, float32 or float64)")
    _check_finite(path, data)
    if data.dtype.kind in "iu" and data.dtype.itemsize == 8:  # nibabel refuses implicit 64-bit ints
        data = data.astype(compact_int_dtype(data))
    return data


def write_volume(path, data, affine, header=None, overwrite: bool = False):
    """Write ``data`` as NIfTI with ``affine`` (and ``header`` if given), atomically.

    Nothing is written on an error; an existing file is kept unless ``overwrite``.

    Raises:
        LsdebmError: If the file exists and ``overwrite`` is False, or cannot be written.
        InputError: If ``path`` is no str/os.PathLike or its name is not .nii/.nii.gz, the data is not a non-empty
            3D array, of a type NIfTI cannot store (complex, float128) or not finite (NaN, inf), the affine is not
            finite and invertible, or ``header`` is not a NIfTI header.
    """
    path = as_path(path, "write_volume path", WRITE_HINT)
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise InputError(f"{path}: output name must end with .nii or .nii.gz")
    data = _writable_data(path, data)
    affine = check_affine(affine, str(path))
    if header is not None and not isinstance(header, nib.Nifti1Header):
        raise InputError(f"{path}: header is a {type(header).__name__}; expected a NIfTI header (Volume.header of "
                         "read_volume) or None")
    header = header.copy() if header is not None else None
    image = nib.Nifti1Image(data, affine, header, dtype=data.dtype)
    image.set_data_dtype(data.dtype)
    sform, qform = (int(header["sform_code"]), int(header["qform_code"])) if header is not None else (0, 0)
    image.set_qform(image.affine, code=qform or 1)  # the input's space (scanner, aligned, MNI, ...), else scanner
    image.set_sform(image.affine, code=sform or 1)
    if header is None:
        image.header.set_xyzt_units("mm")
    return atomic_write(path, lambda tmp: nib.save(image, str(tmp)), overwrite=overwrite)


def grid_free_header(header):
    """What of ``header`` still holds on another grid: the space codes, units and description (None: None)."""
    if header is None:
        return None
    out = nib.Nifti1Header()
    for key in ("sform_code", "qform_code", "descrip", "intent_name"):
        out[key] = header[key]
    out.set_xyzt_units(*header.get_xyzt_units())
    return out
