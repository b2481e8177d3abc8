"""Helpers shared by the reliability tests: hostile files and safetensors header surgery."""
from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import nibabel as nib
import numpy as np


class Evil:
    """Unpickling this object calls ``open(target, "w")``: the file appears iff something unpickled it."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def plant_pickle(path: Path, marker: Path) -> Path:
    """Write a pickle at ``path`` whose loading would create ``marker``."""
    path.write_bytes(pickle.dumps(Evil(str(marker))))
    return path


def read_header(path: Path) -> tuple[dict, bytes]:
    """(header JSON incl. ``__metadata__``, tensor data bytes) of a safetensors file."""
    raw = Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_header(path: Path, header: dict, data: bytes) -> Path:
    """Write a safetensors file from a header dict and the raw data bytes (header padded to 8 bytes)."""
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * ((-len(blob)) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return Path(path)


def edit_metadata(src: Path, dst: Path, **changes) -> Path:
    """Copy a checkpoint with ``__metadata__`` entries replaced (the stored checksum is NOT updated)."""
    header, data = read_header(src)
    header["__metadata__"].update(changes)
    return write_header(dst, header, data)


def edit_config(src: Path, dst: Path, section: str, key: str, value) -> Path:
    """Copy a checkpoint with one config value changed in its metadata."""
    header, _ = read_header(src)
    config = json.loads(header["__metadata__"]["config"])
    config[section][key] = value
    return edit_metadata(src, dst, config=json.dumps(config, sort_keys=True))


def save_nifti(path: Path, data, affine=None) -> Path:
    """Write with nibabel directly (bypassing our writer's checks)."""
    data = np.asarray(data)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine, dtype=data.dtype), str(path))
    return Path(path)


def nifti_with_header_affine(path: Path, data, srow) -> Path:
    """A NIfTI whose sform rows are written verbatim (singular or NaN affines nibabel will not build)."""
    data = np.asarray(data, dtype=np.uint8)
    header = nib.Nifti1Header()
    header.set_data_shape(data.shape)
    header.set_data_dtype(np.uint8)
    header["sform_code"], header["qform_code"] = 1, 0
    header["srow_x"], header["srow_y"], header["srow_z"] = srow
    header["vox_offset"] = 352
    with open(path, "wb") as handle:
        header.write_to(handle)
        handle.write(b"\0" * (352 - handle.tell()))
        handle.write(data.tobytes(order="F"))
    return Path(path)


def huge_header_nifti(path: Path, shape=(3000, 3000, 3000), dtype=np.float64) -> Path:
    """A tiny file whose header claims a volume of ``shape`` (hundreds of GiB)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    with open(path, "wb") as handle:
        header.write_to(handle)
        handle.write(b"\0" * 100)
    return Path(path)


def listing(directory: Path) -> list[str]:
    """Every file below ``directory`` (relative names), to prove nothing partial was left."""
    return sorted(str(p.relative_to(directory)) for p in Path(directory).rglob("*") if p.is_file())
