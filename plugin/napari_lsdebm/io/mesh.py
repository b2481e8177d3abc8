"""Writer contribution for Surface layers: STL, PLY, OBJ or VTP (by suffix) with a provenance sidecar."""
from __future__ import annotations

from types import SimpleNamespace

from lsdebm.review.export import MESH_SUFFIXES, export_mesh
from napari_lsdebm._ui.layer_records import layer_provenance, surface_mesh


def write_surface(path: str, data, meta: dict) -> list[str]:
    """Write a Surface layer's mesh in world mm (review surfaces use their source affine)."""
    if not str(path).lower().endswith(MESH_SUFFIXES):
        path = f"{path}.stl"
    layer = SimpleNamespace(data=data, metadata=dict(meta.get("metadata", {})), name=meta.get("name", "surface"),
                            scale=meta.get("scale", (1.0, 1.0, 1.0)), translate=meta.get("translate", (0.0, 0.0, 0.0)))
    mesh, affine = surface_mesh(layer)
    files, sidecar = export_mesh(path, mesh, affine, layer_provenance(layer), overwrite=True)
    return [str(f) for f in files]
