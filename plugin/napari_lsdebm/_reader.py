"""NIfTI reader contribution."""

from __future__ import annotations

from pathlib import Path

from lsdebm.data.nifti import NIFTI_SUFFIXES, read_volume
from napari_lsdebm._layers import volume_layer


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
    """Read a NIfTI file into one Labels (integer data) or Image layer."""
    path = path[0] if isinstance(path, list) else path
    volume = read_volume(path)
    name = Path(path).name.removesuffix(".gz").removesuffix(".nii")
    return [volume_layer(volume.data, volume.affine, name, source=str(path))]
