"""What a layer records for export: its provenance and its mesh in world mm (dock and writer share these)."""
from __future__ import annotations

import numpy as np

from lsdebm.provenance import make_provenance
from lsdebm.review.surface import Mesh


def layer_provenance(layer) -> dict:
    """The provenance a layer carries (review/pipeline layers), else one from its trajectory metadata."""
    prov = layer.metadata.get("provenance")
    if prov:
        return dict(prov)
    traj = layer.metadata.get("lsdebm_trajectory")
    meta = dict(getattr(traj, "metadata", {}) or {})
    settings = meta.get("settings", {}) if isinstance(meta.get("settings"), dict) else {}
    checkpoints = [{"role": role, "kind": kind, "sha256": meta[key], "name": meta.get(name)}
                   for role, kind, key, name in (("reconnet", "reconnet", "stage1_sha256", None),
                                                 ("method", meta.get("method"), "checkpoint_sha256", "checkpoint_name"))
                   if meta.get(key)]
    return make_provenance(checkpoints, settings.get("seed"), settings,
                           extra={"layer": layer.name, **({"trajectory": meta} if meta else {})})


def surface_mesh(layer) -> tuple[Mesh, np.ndarray | None]:
    """(mesh, affine) of a Surface layer: review surfaces go to world mm with their source affine."""
    vertices, faces = np.asarray(layer.data[0], float), np.asarray(layer.data[1])
    values = np.asarray(layer.data[2]) if len(layer.data) > 2 else None
    name = "signed_distance_mm" if layer.metadata.get("lsdebm_surface") and values is not None else "values"
    if layer.metadata.get("frame") == "grid-mm" and layer.metadata.get("affine") is not None:
        return Mesh(vertices, faces, values, name), np.asarray(layer.metadata["affine"], float)
    world = vertices * np.asarray(layer.scale)[-3:] + np.asarray(layer.translate)[-3:]
    return Mesh(world, faces, values, name), None
