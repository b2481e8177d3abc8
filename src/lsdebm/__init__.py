"""LSD-EBM: latent-space diffusion with an energy-based prior for 3D vertebra masks.

The Qt-free core of napari-lsdebm. Importing this package never imports Qt or napari, and the
names below are loaded on first use (``import lsdebm`` stays fast for the command line).

The public API (docs/api.md):

- checkpoints and models: :func:`load_checkpoint`, :func:`load_models`, :data:`RunSettings`
- reconstruct a file or an array: :func:`reconstruct`
- record a run, reopen and decode it: :func:`record`, :class:`Trajectory`, :func:`decode_frame`
- files: :func:`read_volume`, :func:`write_volume`
- metrics: :func:`compute_metrics`, :func:`dice`, :func:`hd95`, :func:`assd`
- long jobs: :class:`Progress`, :class:`Cancelled`, :func:`drain`
- data to try it on: :func:`make_vertebra`, :func:`simulate_thick_slice`, :func:`load_real_masks`
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "load_checkpoint": "lsdebm.runtime.checkpoint",
    "LoadedCheckpoint": "lsdebm.runtime.checkpoint",
    "load_models": "lsdebm.runtime.loading",
    "Models": "lsdebm.runtime.loading",
    "RunSettings": "lsdebm.methods",
    "reconstruct": "lsdebm.api",
    "record": "lsdebm.api",
    "Recording": "lsdebm.api",
    "decode_frame": "lsdebm.api",
    "ReconstructionResult": "lsdebm.tasks.reconstruct",
    "RunOutput": "lsdebm.explore.record",
    "Trajectory": "lsdebm.sampling.trajectory",
    "read_volume": "lsdebm.data.nifti",
    "write_volume": "lsdebm.data.nifti",
    "compute_metrics": "lsdebm.evaluation.metrics",
    "dice": "lsdebm.evaluation.metrics",
    "hd95": "lsdebm.evaluation.metrics",
    "assd": "lsdebm.evaluation.metrics",
    "Progress": "lsdebm.tasks.progress",
    "Cancelled": "lsdebm.tasks.progress",
    "drain": "lsdebm.tasks.progress",
    "make_vertebra": "lsdebm.data.phantoms",
    "simulate_thick_slice": "lsdebm.data.thickslice",
    "load_real_masks": "lsdebm.data.real",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lsdebm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
