"""The sample pairs the plugin opens and ``lsdebm demo`` runs on: a real vertebra and a phantom.

* :func:`real_sample`: a shipped validation-split vertebra of VerSe 2019's verse009 (a subject no
  checkpoint trained on), resampled to 1 mm and degraded by 5 mm sagittal slabs, with its
  attribution (:data:`REAL_ATTRIBUTION`, CC BY-SA 4.0);
* :func:`phantom_sample`: a procedural phantom at a model grid, degraded by the default
  thick-slice settings.

Qt-free; ``napari_lsdebm.sample_data`` wraps both as napari layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsdebm.data.thickslice import ThickSliceParams
from lsdebm.errors import InputError

REAL_SUBJECT = "verse009"
REAL_ATTRIBUTION = "VerSe 2019 (Sekuboyina et al. 2021; Löffler et al. 2020), CC BY-SA 4.0"
REAL_PARAMS = ThickSliceParams(plane="sagittal", thickness=5.0, gap=0.0, inplane_blur=0.7,
                               noise_amplitude=0.2, noise_smoothness=3.0)


@dataclass
class SamplePair:
    """A high-quality mask, its simulated thick-slice mask (same grid) and where they come from.

    Attributes:
        name: e.g. ``L3_verse009`` or ``L3-seed0``.
        truth: The high-quality mask (uint8 {0, 1}).
        lq: The thick-slice mask on the same grid (uint8 {0, 1}).
        affine: Their voxel-to-world affine.
        attribution: The data's credit line (None for a phantom).
        path: The shipped file (None for a phantom).
    """

    name: str
    truth: np.ndarray
    lq: np.ndarray
    affine: np.ndarray
    attribution: str | None = None
    path: Path | None = None


def real_sample(level: str = "L3", seed: int = 0) -> SamplePair:
    """verse009's ``level`` (L1-L5, validation split) at 1 mm and its 5 mm sagittal thick-slice version.

    Raises:
        InputError: If ``level`` is not one of verse009's shipped lumbar vertebrae.
    """
    from lsdebm.data.real import degrade, isotropic, load_real_masks

    name = f"{level}_{REAL_SUBJECT}"
    try:
        found = [m for m in load_real_masks(split="val", levels=(level,)) if m.name == name]
    except InputError:  # no shipped mask of that level at all
        found = []
    if not found:
        levels = [m.level for m in load_real_masks(split="val", levels=None) if m.subject == REAL_SUBJECT]
        raise InputError(f"no shipped real sample {name}; levels of {REAL_SUBJECT}: {', '.join(levels)}")
    truth, affine = isotropic(found[0].mask, found[0].affine, spacing=1.0)
    lq = degrade(truth, affine, REAL_PARAMS, np.random.default_rng(seed))
    return SamplePair(name, truth.astype(np.uint8), (lq > 0).astype(np.uint8), affine, REAL_ATTRIBUTION,
                      found[0].path)


def phantom_sample(level: str = "L3", seed: int = 0, size: int = 64, spacing: float = 2.0):
    """``(pair, phantom)``: a phantom of ``level`` at ``size``³ and ``spacing`` mm, degraded by the default
    thick-slice settings; ``phantom`` (:class:`lsdebm.data.phantoms.Phantom`) also holds its part labels."""
    from lsdebm.data.phantoms import make_vertebra
    from lsdebm.data.thickslice import simulate_thick_slice

    phantom = make_vertebra(level, seed, size, spacing)
    lq = simulate_thick_slice(phantom.mask, spacing, ThickSliceParams(), np.random.default_rng(seed))
    pair = SamplePair(f"{level}-seed{seed}", phantom.mask.astype(np.uint8), (lq > 0).astype(np.uint8),
                      phantom.affine)
    return pair, phantom
