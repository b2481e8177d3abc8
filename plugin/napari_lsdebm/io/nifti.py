"""NIfTI reader and writer contributions (Labels and Image layers with their affine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lsdebm.data.nifti import NIFTI_SUFFIXES, read_volume, write_volume
from lsdebm.errors import InputError
from napari_lsdebm._ui.layers import volume_layer
from napari_lsdebm._ui.roles import role_from_description, role_from_name, tag_tuple


def get_reader(path):
    """Return a reader for a single ``.nii``/``.nii.gz`` path, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not str(path).endswith(NIFTI_SUFFIXES):
        return None
    return read_nifti


def read_nifti(path):
    """Read a NIfTI file into one Labels (integer data) or Image layer, tagged with its role.

    The role (input / truth) comes from the header's ``descrip`` (``lsdebm role: truth``), else
    from the file name (``*_gt``, ``*truth*``, ``*hq*``; ``*_lq``, ``*thick*``, ``*input*``).
    """
    path = path[0] if isinstance(path, list) else path
    volume = read_volume(path)
    name = Path(path).name.removesuffix(".gz").removesuffix(".nii")
    descrip = volume.header["descrip"].item() if volume.header is not None else b""
    role = role_from_description(descrip) or role_from_name(name)
    return [tag_tuple(volume_layer(volume.data, volume.affine, name, source=str(path)), role)]


def layer_affine(meta: dict) -> np.ndarray:
    """The source affine from layer metadata, else where napari draws the layer's last three axes.

    napari's own transform is ``affine`` (physical to world) after ``translate + rotate @ shear @ scale``: a
    layer shown with ``affine=`` (as scripts show a NIfTI) is written where it is drawn, not at unit spacing."""
    affine = meta.get("metadata", {}).get("affine")
    if affine is not None:
        return np.asarray(affine, dtype=float)
    from napari.utils.transforms import Affine

    given = {key: meta[key] for key in ("scale", "translate", "rotate", "shear") if meta.get(key) is not None}
    ndim = len(given["scale"]) if "scale" in given else 3
    inner = Affine(ndim=ndim, **given).affine_matrix  # napari's own composition of the four
    outer = meta.get("affine")
    full = inner if outer is None else np.asarray(getattr(outer, "affine_matrix", outer), float) @ inner
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = full[ndim - 3:ndim, ndim - 3:ndim], full[ndim - 3:ndim, ndim]
    return out


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as NIfTI with its source affine (or one built from scale).

    Replaces an existing file (napari's save dialog has already asked). Writing is atomic, so a
    failure leaves neither a partial file nor a temporary one; non-3D layers and unusable
    affines are refused with a one-line :class:`InputError`.
    """
    if not str(path).endswith((".nii", ".nii.gz")):
        path = f"{path}.nii.gz"
    array = np.asarray(data)
    if array.ndim != 3:
        raise InputError(f"{path}: layer {meta.get('name')!r} has {array.ndim} dimensions {array.shape}; "
                         "only 3D label layers can be saved as NIfTI")
    if array.max(initial=0) < 256 and array.min(initial=0) >= 0:
        array = array.astype(np.uint8)
    write_volume(path, array, layer_affine(meta), overwrite=True)
    return [str(path)]
