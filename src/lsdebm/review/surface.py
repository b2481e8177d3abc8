"""Smooth surface meshes of masks and their signed distance to a reference surface in mm.

Meshes live in the *grid-mm frame*: array axes in order, scaled by the voxel spacing
(vertex = voxel index * spacing), which is where napari draws a layer whose ``scale`` is the
spacing. :func:`lsdebm.review.export.export_mesh` maps them to world (RAS+) mm with the affine.

Pipeline: marching cubes at the 0.5 iso-level of the zero-padded mask (scikit-image, closed
surfaces, triangles wound so that normals point outwards), Taubin smoothing (volume preserving,
unlike Laplacian smoothing) and optional quadric decimation (pyvista/VTK). The signed distance of
each vertex to the reference surface is VTK's implicit poly-data distance: positive outside the
reference (over-segmentation), negative inside (under-segmentation).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lsdebm.errors import InputError, LsdebmError


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh.

    Attributes:
        vertices: (N, 3) float32 vertex positions in the grid-mm frame.
        faces: (M, 3) int64 vertex indices of the triangles.
        values: Optional (N,) per-vertex scalars (e.g. signed distance in mm).
        values_name: What ``values`` holds.
    """

    vertices: np.ndarray
    faces: np.ndarray
    values: np.ndarray | None = None
    values_name: str = ""

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (what a cache counts)."""
        extra = 0 if self.values is None else np.asarray(self.values).nbytes
        return int(np.asarray(self.vertices).nbytes + np.asarray(self.faces).nbytes + extra)

    def layer_data(self) -> tuple:
        """``(vertices, faces[, values])`` as a napari Surface layer takes it."""
        base = (self.vertices, self.faces)
        return base if self.values is None else base + (self.values,)


def _pyvista():
    try:
        import pyvista
    except ImportError:  # pragma: no cover - depends on the install
        raise LsdebmError("mesh smoothing, decimation, distances and mesh files need pyvista; "
                          "install it with: pip install 'napari-lsdebm[viewer]'") from None
    return pyvista


def to_polydata(mesh: Mesh):
    """The mesh as a ``pyvista.PolyData`` (values, if any, as point data)."""
    pv = _pyvista()
    faces = np.hstack([np.full((len(mesh.faces), 1), 3, np.int64), mesh.faces.astype(np.int64)]).ravel()
    poly = pv.PolyData(np.asarray(mesh.vertices, np.float64), faces)
    if mesh.values is not None:
        poly.point_data[mesh.values_name or "values"] = np.asarray(mesh.values)
    return poly


def from_polydata(poly) -> Mesh:
    """A :class:`Mesh` from a triangulated ``pyvista.PolyData`` (point data is dropped)."""
    poly = poly.triangulate()
    faces = np.asarray(poly.faces).reshape(-1, 4)[:, 1:]
    return Mesh(np.asarray(poly.points, np.float32), faces.astype(np.int64))


def empty_mesh() -> Mesh:
    """A mesh without vertices or triangles (the surface of an empty volume)."""
    return Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64))


def iso_surface(values, level: float = 0.5, spacing=1.0) -> Mesh:
    """Raw marching-cubes surface of a 3D scalar field at ``level``, in the grid-mm frame.

    The field is zero-padded by one voxel so surfaces touching the border are closed; a field
    that never reaches ``level`` gives :func:`empty_mesh`. Triangles are wound so normals point
    towards lower values (outwards for a mask or probability map).
    """
    from skimage.measure import marching_cubes

    values = np.asarray(values, np.float32)
    if values.ndim != 3:
        raise InputError(f"an iso-surface needs a 3D volume; got shape {values.shape}")
    spacing = np.broadcast_to(np.asarray(spacing, float), (3,))
    if values.size == 0 or not float(values.max()) > level:
        return empty_mesh()
    padded = np.pad(values, 1)
    verts, faces, _, _ = marching_cubes(padded, level=level, spacing=tuple(spacing), allow_degenerate=False)
    # scikit-image winds triangles inward in array-axis coordinates; reverse them so normals point out
    return Mesh((verts - spacing).astype(np.float32), np.ascontiguousarray(faces[:, ::-1]).astype(np.int64))


def mask_mesh(mask, spacing=1.0, smooth_iterations: int = 20, pass_band: float = 0.1,
              decimate: float = 0.0) -> Mesh:
    """Surface mesh of a binary mask in the grid-mm frame.

    Args:
        mask: 3D array, nonzero = inside.
        spacing: Voxel spacing in mm per axis (or one number).
        smooth_iterations: Taubin smoothing iterations (0 = raw marching cubes, no pyvista needed).
        pass_band: Taubin pass band (smaller = smoother), 0 < pass_band < 2.
        decimate: Fraction of triangles to remove (0 keeps all, 0.9 keeps 10 %).

    Raises:
        InputError: If the mask is not 3D, is empty, or an option is out of range.
    """
    mask = np.asarray(mask) != 0
    if mask.ndim != 3:
        raise InputError(f"surface meshes need a 3D mask; got shape {mask.shape}")
    if not mask.any():
        raise InputError("the mask is empty; there is no surface to extract")
    if smooth_iterations < 0 or not 0.0 < pass_band < 2.0 or not 0.0 <= decimate < 1.0:
        raise InputError(f"smoothing iterations must be >= 0, pass band in (0, 2) and decimation in [0, 1); "
                         f"got {smooth_iterations}, {pass_band}, {decimate}")
    mesh = iso_surface(mask.astype(np.float32), 0.5, spacing)
    if smooth_iterations == 0 and decimate == 0.0:
        return mesh
    poly = to_polydata(mesh)
    if smooth_iterations:
        poly = poly.smooth_taubin(n_iter=int(smooth_iterations), pass_band=float(pass_band))
    if decimate:
        poly = poly.triangulate().decimate(float(decimate))
    return from_polydata(poly)


def signed_distance(mesh: Mesh, reference: Mesh) -> np.ndarray:
    """Signed distance (mm) of each vertex of ``mesh`` to the surface ``reference``.

    Positive outside the reference surface, negative inside. Both meshes must be in the same
    frame (the grid-mm frame of one grid).
    """
    ref_poly = to_polydata(replace(reference, values=None)).compute_normals(auto_orient_normals=True)
    points = to_polydata(replace(mesh, values=None))
    out = points.compute_implicit_distance(ref_poly)
    return np.asarray(out.point_data["implicit_distance"], np.float32)


def distance_surface(mask, reference, spacing=1.0, smooth_iterations: int = 20, pass_band: float = 0.1,
                     decimate: float = 0.0) -> Mesh:
    """Mesh of ``mask`` coloured by signed distance (mm) to the surface of ``reference``.

    Both masks are meshed with the same settings, so a mask compared with itself gives 0.

    Raises:
        InputError: If the shapes differ or either mask is empty.
    """
    mask, reference = np.asarray(mask), np.asarray(reference)
    if mask.shape != reference.shape:
        raise InputError(f"mask and reference shapes differ: {mask.shape} vs {reference.shape}")
    kw = dict(spacing=spacing, smooth_iterations=smooth_iterations, pass_band=pass_band, decimate=decimate)
    mesh = mask_mesh(mask, **kw)
    ref_mesh = mask_mesh(reference, **kw)
    return replace(mesh, values=signed_distance(mesh, ref_mesh), values_name="signed_distance_mm")


def symmetric_limit(values, percentile: float = 99.0) -> float:
    """A symmetric colour limit for distances: the ``percentile`` of |values| (at least 1e-3 mm)."""
    values = np.abs(np.asarray(values, float))
    return float(max(np.percentile(values, percentile) if values.size else 0.0, 1e-3))
