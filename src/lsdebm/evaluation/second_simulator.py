"""A second thick-slice simulator, written apart from the product's, to check that gains are not ours alone.

The bundled models were trained and tuned on data from :mod:`lsdebm.data.thickslice`; a real
user's (and the product owner's) thick slices come from other scanners and other simulators.
This one shares no code with it and differs in how it degrades a mask:

- **boundary jitter** perturbs the truth's signed distance by smooth noise (``jitter_mm`` std,
  ``smoothness_mm`` correlation) *before* slicing, instead of adding noise to partial-volume values;
- **slab profile** ``box`` (uniform over the slab) or ``gauss`` (a Gaussian slice profile with
  a FWHM of the slab thickness), sampled every ``thickness + gap_mm``;
- **in-plane blur** ``blur_mm`` (Gaussian sigma) after slab averaging, then ``threshold``;
- **resampling** to the truth grid: ``nearest`` (each slab repeated, a staircase) or ``linear``
  (the partial-volume values interpolated between slab centres, then thresholded -- no staircase
  to find); the native form keeps one slice per slab.

Use: ``lsdebm evaluate --real --simulator second --simulator-option profile=gauss ...``
(:func:`lsdebm.evaluation.real.real_cases` with ``simulator=SecondSimulator(...)``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy import ndimage

from lsdebm.errors import InputError

PROFILES = ("box", "gauss")
RESAMPLINGS = ("nearest", "linear")
FWHM_TO_SIGMA = 1.0 / 2.3548


@dataclass(frozen=True)
class SecondSimulator:
    """Settings of the second simulator (see the module doc); every field has a plain default."""

    profile: str = "box"
    jitter_mm: float = 0.6
    smoothness_mm: float = 4.0
    gap_mm: float = 0.0
    blur_mm: float = 0.5
    threshold: float = 0.5
    resample: str = "nearest"

    def __post_init__(self):
        if self.profile not in PROFILES:
            raise InputError(f"simulator profile {self.profile!r}: expected one of {', '.join(PROFILES)}")
        if self.resample not in RESAMPLINGS:
            raise InputError(f"simulator resample {self.resample!r}: expected one of {', '.join(RESAMPLINGS)}")
        for name, lo, hi in (("jitter_mm", 0.0, 5.0), ("smoothness_mm", 0.5, 20.0), ("gap_mm", 0.0, 5.0),
                             ("blur_mm", 0.0, 5.0), ("threshold", 0.1, 0.9)):
            if not lo <= getattr(self, name) <= hi:
                raise InputError(f"simulator {name} {getattr(self, name):g} is outside {lo:g}-{hi:g}")

    @classmethod
    def from_options(cls, options) -> SecondSimulator:
        """Settings from ``key=value`` strings (``--simulator-option``); unknown keys are refused by name."""
        known = {f.name: f.type for f in fields(cls)}
        values: dict = {}
        for item in options or ():
            key, sep, value = str(item).partition("=")
            key = key.strip()
            if not sep or key not in known:
                raise InputError(f"--simulator-option {item!r}: expected KEY=VALUE with KEY one of {', '.join(known)}")
            try:
                values[key] = value.strip() if key in ("profile", "resample") else float(value)
            except ValueError:
                raise InputError(f"--simulator-option {item!r}: {key} takes a number") from None
        return cls(**values)

    def as_dict(self) -> dict:
        return {"name": "second", **asdict(self)}

    def degrade(self, truth: np.ndarray, affine, axis: int, thickness: float, rng: np.random.Generator):
        """Degrade ``truth`` (isotropic grid ``affine``) with slabs along array ``axis``.

        Returns ``(lq, native, native_affine)``: the low-quality mask on the truth grid and on its
        own thick-slice grid (one slice per slab, at the slab centre).
        """
        affine = np.asarray(affine, float)
        spacing = float(np.linalg.norm(affine[:3, axis]))
        inside = np.asarray(truth) != 0
        sdf = ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(inside)
        sdf = sdf * spacing
        if self.jitter_mm > 0:
            noise = ndimage.gaussian_filter(rng.standard_normal(inside.shape), self.smoothness_mm / spacing)
            sdf = sdf + self.jitter_mm * noise / max(float(noise.std()), 1e-9)
        volume = np.moveaxis((sdf < 0).astype(np.float32), axis, 0)
        n = volume.shape[0]
        period = thickness + self.gap_mm
        centres = np.arange(rng.uniform(0.0, period) + thickness / 2, n * spacing, period)  # mm from the edge
        if centres.size < 2:
            raise InputError(f"the volume is {n * spacing:g} mm along the slab axis: too short for "
                             f"{thickness:g} mm slabs")
        slabs = np.tensordot(self._weights(centres, n, spacing, thickness), volume, axes=(1, 0))
        if self.blur_mm > 0:
            slabs = ndimage.gaussian_filter(slabs, (0.0, self.blur_mm / spacing, self.blur_mm / spacing))
        at = centres / spacing - 0.5  # slab centres in voxel-index units
        pos = np.arange(n)
        if self.resample == "nearest":
            lq = slabs[np.abs(pos[:, None] - at[None, :]).argmin(1)] >= self.threshold
        else:
            upper = np.clip(np.searchsorted(at, pos), 1, len(at) - 1)
            frac = np.clip((pos - at[upper - 1]) / (at[upper] - at[upper - 1]), 0.0, 1.0)[:, None, None]
            lq = slabs[upper - 1] * (1 - frac) + slabs[upper] * frac >= self.threshold
        lq = np.ascontiguousarray(np.moveaxis(lq, 0, axis)).astype(np.uint8)
        keep = (np.rint(at) >= 0) & (np.rint(at) < n)
        native = np.ascontiguousarray(np.moveaxis(slabs[keep] >= self.threshold, 0, axis)).astype(np.uint8)
        native_affine = affine.copy()
        native_affine[:3, axis] = affine[:3, axis] * period / spacing
        native_affine[:3, 3] = affine[:3, 3] + affine[:3, axis] * at[keep][0]
        return lq, native, native_affine

    def _weights(self, centres: np.ndarray, n: int, spacing: float, thickness: float) -> np.ndarray:
        """(slabs, n) weights of each voxel slice in each slab (rows sum to one)."""
        z = (np.arange(n) + 0.5) * spacing
        if self.profile == "box":
            lo, hi = centres[:, None] - thickness / 2, centres[:, None] + thickness / 2
            w = np.clip(np.minimum(z[None] + spacing / 2, hi) - np.maximum(z[None] - spacing / 2, lo), 0.0, None)
        else:
            w = np.exp(-0.5 * ((z[None] - centres[:, None]) / (thickness * FWHM_TO_SIGMA)) ** 2)
        return (w / np.maximum(w.sum(1, keepdims=True), 1e-12)).astype(np.float32)
