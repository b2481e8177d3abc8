"""Surface meshes of reconstructions written as binary STL in world mm (Qt-free, no pyvista).

The mesh is the 0.5 iso-surface of the (zero-padded) foreground, from
:func:`lsdebm.review.surface.mask_mesh` (marching cubes, scikit-image), mapped to world RAS+ mm
with the volume's affine by :func:`lsdebm.review.export.world_mesh`. A label map gives one mesh
of all nonzero labels; a probability map is thresholded at ``level`` first. The STL writer is
plain numpy, so only scikit-image is needed (it comes with the ``viewer`` extra).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from lsdebm.data.validate import check_affine, is_number
from lsdebm.errors import InputError
from lsdebm.fileio import atomic_write
from lsdebm.review.surface import Mesh

MESH_FILE_SUFFIXES = (".stl",)
_STL_TRIANGLE = np.dtype([("normal", "<f4", 3), ("vertices", "<f4", (3, 3)), ("attr", "<u2")])


def check_mesh_path(path: str | os.PathLike) -> Path:
    """``path`` as a mesh file name, or a one-line InputError if its suffix is not ``.stl``."""
    path = Path(path)
    if path.suffix.lower() not in MESH_FILE_SUFFIXES:
        raise InputError(f"{path}: mesh files must end with {', '.join(MESH_FILE_SUFFIXES)}")
    return path


def require_marching_cubes() -> None:
    """Raise a one-line InputError when scikit-image (marching cubes) is not installed."""
    if importlib.util.find_spec("skimage") is None:
        raise InputError("surface meshes need scikit-image; install it with: pip install scikit-image "
                         "(or pip install 'napari-lsdebm[viewer]')")


def world_surface(mask_or_probs, affine, level: float = 0.5) -> Mesh:
    """The surface of a mask, label map or probability map as a mesh in world mm.

    Args:
        mask_or_probs: 3D array; integers/booleans: nonzero is inside; reals: ``>= level`` is inside.
        affine: 4x4 voxel-to-world affine of the array.
        level: Probability threshold for real-valued input.

    Raises:
        InputError: If scikit-image is missing, the affine is not a finite invertible 4x4 matrix, ``level`` is not
            a number, or the volume is not 3D, holds NaN/inf or has no foreground.
    """
    from lsdebm.data.nifti import affine_spacing
    from lsdebm.review.export import world_mesh
    from lsdebm.review.surface import mask_mesh

    affine = check_affine(affine, "affine")  # a singular or NaN one wrote degenerate or NaN vertices
    if not is_number(level):
        raise InputError(f"level={level!r:.60}: expected a number (the threshold of a probability map, e.g. 0.5)")
    require_marching_cubes()
    data = np.asarray(mask_or_probs)
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise InputError("the volume contains NaN or infinite values; expected a finite mask, label map or "
                         "probability map")
    inside = data >= level if data.dtype.kind == "f" else data != 0
    mesh = mask_mesh(inside, spacing=affine_spacing(affine), smooth_iterations=0)
    return world_mesh(mesh, affine)


def stl_bytes(mesh: Mesh, header: str = "lsdebm surface, world RAS+ mm") -> bytes:
    """A binary STL file of ``mesh`` (facet normals from the winding)."""
    tri = np.asarray(mesh.vertices, np.float32)[np.asarray(mesh.faces)]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    records = np.zeros(len(tri), _STL_TRIANGLE)
    records["normal"] = normals / np.where(lengths > 0, lengths, 1.0)
    records["vertices"] = tri
    head = header.encode("ascii", "replace")[:80].ljust(80, b" ")
    return head + np.uint32(len(tri)).tobytes() + records.tobytes()


def write_stl(path: str | os.PathLike, mesh: Mesh, overwrite: bool = False) -> Path:
    """Write ``mesh`` as binary STL, atomically."""
    path = check_mesh_path(path)
    if len(mesh.faces) == 0:
        raise InputError(f"{path}: the mesh has no triangles")
    data = stl_bytes(mesh)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), overwrite=overwrite)


def write_mesh(path: str | os.PathLike, mask_or_probs, affine, level: float = 0.5, overwrite: bool = False) -> Path:
    """Write the surface of a mask (all nonzero labels) or probability map as binary STL in world mm.

    Args:
        path: Output ``.stl`` file.
        mask_or_probs: 3D mask, label map or probability map.
        affine: Its 4x4 voxel-to-world affine (vertices are written in world mm).
        level: Threshold for probability maps.
        overwrite: Replace an existing file.

    Returns:
        The written path.
    """
    check_mesh_path(path)
    return write_stl(path, world_surface(mask_or_probs, affine, level), overwrite=overwrite)


def read_stl(path: str | os.PathLike) -> np.ndarray:
    """Triangles ``(M, 3, 3)`` of a binary STL file (for checks and tests)."""
    raw = Path(path).read_bytes()
    if len(raw) < 84:
        raise InputError(f"{path}: too short for a binary STL file")
    count = int(np.frombuffer(raw, "<u4", 1, 80)[0])
    if len(raw) != 84 + count * _STL_TRIANGLE.itemsize:
        raise InputError(f"{path}: size does not match a binary STL with {count} triangles")
    return np.frombuffer(raw, _STL_TRIANGLE, count, 84)["vertices"].copy()
