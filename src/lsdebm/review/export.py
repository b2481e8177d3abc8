"""Exports for review: masks as NIfTI, meshes as STL/PLY/OBJ/VTP, images; each with a provenance sidecar.

Every export writes the file and, beside it, the sidecar JSON of :mod:`lsdebm.provenance`
(``name.provenance.json``): the provenance of the data (checkpoints by sha256, seed, sampling
settings, versions -- as recorded when the data was produced) plus an ``export`` entry naming
the file, its format and, for meshes, the coordinate frame. Both files are written atomically;
an existing file (or sidecar) is an error unless ``overwrite``. Animations: :mod:`lsdebm.review.animation`.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np

from lsdebm.data.nifti import affine_spacing, write_volume
from lsdebm.data.validate import check_affine
from lsdebm.errors import InputError, LsdebmError
from lsdebm.fileio import atomic_write
from lsdebm.provenance import make_provenance, sidecar_path, write_provenance
from lsdebm.review.surface import Mesh, to_polydata

MESH_SUFFIXES = (".stl", ".ply", ".obj", ".vtp")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def export_record(provenance: dict[str, Any] | None, paths, kind: str, **details: Any) -> dict[str, Any]:
    """The sidecar record: the data's provenance (a fresh one if None) plus an ``export`` entry.

    ``paths`` is the exported file (or a list of files) and is added to ``outputs``.
    """
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    record = dict(provenance) if provenance else make_provenance([], None, {})
    record["export"] = {"files": [p.name for p in paths], "kind": kind,
                        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **details}
    record["outputs"] = list(dict.fromkeys(list(record.get("outputs", [])) + [str(p) for p in paths]))
    record["versions"] = {**record.get("versions", {}), **_export_versions()}
    return record


def _export_versions() -> dict[str, str]:
    """Versions of the viewer-side packages that shape exported files (read from metadata, not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("napari", "pyvista", "vtk", "scikit-image", "imageio"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def _check_targets(path: Path, overwrite: bool) -> None:
    """Fail before writing anything when the file or its sidecar exists."""
    if overwrite:
        return
    for target in (path, sidecar_path(path)):
        if target.exists():
            what = "the provenance sidecar of an export with this name" if target.suffix == ".json" else "file"
            raise LsdebmError(f"{target} already exists ({what}); choose another name or allow overwriting")


def _write_with_sidecar(path: Path, write_fn, record: dict, overwrite: bool) -> tuple[Path, Path]:
    _check_targets(path, overwrite)
    atomic_write(path, write_fn, overwrite=overwrite)
    return path, write_provenance(path, record, overwrite=overwrite)


def export_mask(path, mask, affine, provenance: dict | None = None, header=None,
                overwrite: bool = False) -> tuple[Path, Path]:
    """Write a mask or label map as NIfTI with ``affine`` (the original grid) and a sidecar.

    Returns:
        (file, sidecar) paths.
    """
    path = Path(path)
    data = np.asarray(mask)
    if data.dtype == bool or (data.dtype.kind in "iu" and data.min(initial=0) >= 0 and data.max(initial=0) < 256):
        data = data.astype(np.uint8)
    record = export_record(provenance, path, "mask", shape=list(data.shape),
                           affine=np.asarray(affine, float).round(6).tolist())
    _check_targets(path, overwrite)
    write_volume(path, data, affine, header=header, overwrite=overwrite)
    return path, write_provenance(path, record, overwrite=overwrite)


def world_mesh(mesh: Mesh, affine) -> Mesh:
    """Map a grid-mm mesh to world (RAS+) mm with the voxel-to-world ``affine``.

    Triangle winding is reversed when the affine flips handedness, so normals keep pointing out.

    Raises:
        InputError: If ``affine`` is not a finite, invertible 4x4 matrix.
    """
    affine = check_affine(affine, "affine")
    spacing = np.asarray(affine_spacing(affine))
    index = np.asarray(mesh.vertices, float) / spacing
    world = index @ affine[:3, :3].T + affine[:3, 3]
    faces = mesh.faces[:, ::-1] if np.linalg.det(affine[:3, :3]) < 0 else mesh.faces
    return Mesh(world.astype(np.float32), np.ascontiguousarray(faces), mesh.values, mesh.values_name)


def export_mesh(path, mesh: Mesh, affine=None, provenance: dict | None = None, overwrite: bool = False,
                formats: tuple[str, ...] | None = None) -> tuple[list[Path], Path]:
    """Write a mesh as STL, PLY, OBJ and/or VTP with one provenance sidecar.

    Args:
        path: Output file; its suffix picks the format (or, with ``formats``, only its stem counts).
        mesh: Mesh in the grid-mm frame (:mod:`lsdebm.review.surface`).
        affine: The source volume's affine; vertices are written in world (RAS+) mm. Without
            it they stay in the grid-mm frame (recorded in the sidecar).
        provenance: Provenance of the data the mesh was made from.
        overwrite: Replace existing files.
        formats: Several formats at once, e.g. ``("stl", "vtp")``: one file per format beside
            ``path`` and a single sidecar listing them all (sidecars are named by stem).

    Per-vertex values (e.g. signed distance) are kept as point data in VTP and PLY files.

    Returns:
        (files, sidecar).
    """
    path = Path(path)
    suffixes = [f".{f.lower().lstrip('.')}" for f in formats] if formats else [path.suffix.lower()]
    bad = [s for s in suffixes if s not in MESH_SUFFIXES]
    if bad or not suffixes:
        raise InputError(f"{path}: mesh formats must be among {', '.join(MESH_SUFFIXES)}; got {bad or 'none'}")
    if len(mesh.faces) == 0:
        raise InputError(f"{path}: the mesh has no triangles")
    targets = [path.with_suffix(s) for s in dict.fromkeys(suffixes)]
    out = world_mesh(mesh, affine) if affine is not None else mesh
    frame = "world RAS+ mm (source affine)" if affine is not None else "grid mm (voxel index x spacing)"
    record = export_record(provenance, targets, "mesh", formats=[t.suffix[1:] for t in targets], frame=frame,
                           vertices=len(out.vertices), faces=len(out.faces), values=out.values_name or None)
    for target in targets:
        _check_targets(target, overwrite)
    poly = to_polydata(out)
    for target in targets:
        atomic_write(target, lambda tmp: poly.save(str(tmp)), overwrite=overwrite)
    return targets, write_provenance(targets[0], record, overwrite=overwrite)


def export_image(path, image, provenance: dict | None = None, overwrite: bool = False,
                 kind: str = "screenshot") -> tuple[Path, Path]:
    """Write an (H, W[, 3|4]) uint8 image (a screenshot) with a sidecar."""
    import imageio.v3 as iio

    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: image files must end with {', '.join(IMAGE_SUFFIXES)}")
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise InputError(f"{path}: expected an (H, W) or (H, W, C) image; got shape {image.shape}")
    if path.suffix.lower() in (".jpg", ".jpeg") and image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]  # JPEG has no alpha channel (a screenshot is RGBA)
    record = export_record(provenance, path, kind, shape=list(image.shape))
    return _write_with_sidecar(path, lambda tmp: iio.imwrite(tmp, image.astype(np.uint8), extension=path.suffix),
                               record, overwrite)
