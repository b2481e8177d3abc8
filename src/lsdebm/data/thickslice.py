"""Thick-slice MRI simulation: the low-quality (LQ) stand-in for L-MRI reconstructions.

A high-quality mask is "acquired" as thick slabs along a through-plane axis (partial-volume
averaging over each slab), smooth boundary noise is added to the slab values, the slabs are
thresholded into a binary segmentation and resampled back to the isotropic grid. The result
shows a staircase along the through-plane axis and thin structures broken or lost.

Array axes are (Z, Y, X) as in :mod:`lsdebm.data.phantoms`; the plane names which axis is
sliced: sagittal slices stack along X (axis 2), coronal along Y (axis 1), axial along Z
(axis 0).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

from lsdebm.data.validate import check_mask, is_number, range_checked
from lsdebm.errors import InputError

PLANE_AXES = {"axial": 0, "coronal": 1, "sagittal": 2}
INTERPOLATIONS = ("nearest", "linear")
#: The numeric :class:`ThickSliceParams` fields: (low, high, unit in the message); offset is checked on its own.
_RANGES = {
    "thickness": (1.0, 10.0, " of mm"),
    "gap": (0.0, 5.0, " of mm"),
    "inplane_blur": (0.0, 5.0, " of mm"),
    "noise_amplitude": (0.0, 0.5, ""),
    "noise_smoothness": (0.5, 20.0, " of mm"),
    "threshold": (0.1, 0.9, ""),
}


@dataclass(frozen=True)
class ThickSliceParams:
    """Acquisition settings of the simulated thick-slice scan.

    Attributes:
        plane: Acquisition plane, one of "sagittal" (default), "coronal", "axial".
        thickness: Slice (slab) thickness in mm, 1-10 (typical 3-6; default 4.5).
        gap: Gap between slabs in mm, 0-5 (default 0.5). Gaps are filled from the
            nearest slice when resampling.
        offset: Position of the first slab start in mm relative to the grid edge,
            0 <= offset < thickness + gap (default 0).
        inplane_blur: Gaussian sigma in mm of the in-plane blur (finite in-plane
            resolution and smooth MRI segmentation), 0-5 (default 2). Together with
            the slab averaging it erodes thin structures.
        noise_amplitude: Std of the smooth noise added to the partial-volume values,
            0-0.5 (default 0.35). Moves the boundary by a voxel or two.
        noise_smoothness: Correlation length (Gaussian sigma) of the noise in mm, 0.5-20
            (default 4).
        threshold: Level at which the noisy partial-volume values become foreground,
            0.1-0.9 (default 0.5).
        interpolation: Resampling back to isotropic: "nearest" (slab value, staircase;
            default) or "linear" (between slab centres, then thresholded).
    """

    plane: str = "sagittal"
    thickness: float = 4.5
    gap: float = 0.5
    offset: float = 0.0
    inplane_blur: float = 2.0
    noise_amplitude: float = 0.35
    noise_smoothness: float = 4.0
    threshold: float = 0.5
    interpolation: str = "nearest"

    def __post_init__(self):
        for name, allowed in (("plane", tuple(PLANE_AXES)), ("interpolation", INTERPOLATIONS)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise InputError(f"ThickSliceParams.{name}={value!r:.60}: expected one of {', '.join(allowed)}")
        for name, bounds in _RANGES.items():  # numpy scalars stored as floats: as_dict stays JSON
            object.__setattr__(self, name, range_checked("ThickSliceParams", name, getattr(self, name), *bounds))
        period = self.thickness + self.gap
        if not (is_number(self.offset) and 0.0 <= self.offset < period):
            raise InputError(f"ThickSliceParams.offset={self.offset!r:.60}: expected a number of mm in "
                             f"[0, thickness + gap) = [0, {period:g})")
        object.__setattr__(self, "offset", float(self.offset))

    def as_dict(self) -> dict:
        """Return the settings as a plain dict (for manifests)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ParamRanges:
    """Ranges from which :func:`sample_params` draws settings uniformly.

    Attributes:
        planes: Planes to choose from (uniformly).
        thickness, gap, inplane_blur, noise_amplitude, noise_smoothness, threshold:
            (low, high) in the
            units of :class:`ThickSliceParams`.
        offset_fraction: (low, high) of the offset as a fraction of thickness + gap.
        interpolation: Interpolation used for every case, or a tuple to draw it from
            (uniformly, one more draw per case).
    """

    planes: tuple = ("sagittal",)
    thickness: tuple = (3.0, 5.0)
    gap: tuple = (0.0, 1.0)
    offset_fraction: tuple = (0.0, 1.0)
    inplane_blur: tuple = (1.5, 2.5)
    noise_amplitude: tuple = (0.25, 0.45)
    noise_smoothness: tuple = (2.0, 6.0)
    threshold: tuple = (0.45, 0.55)
    interpolation: str = "nearest"


#: Settings for training pairs: sagittal, 3-5 mm slices.
TRAIN_RANGES = ParamRanges()
#: Settings for test pairs: also 5-6 mm slices, which training never sees.
TEST_RANGES = ParamRanges(thickness=(3.0, 6.0))


def sample_params(rng: np.random.Generator, ranges: ParamRanges = TRAIN_RANGES) -> ThickSliceParams:
    """Draw one case's acquisition settings uniformly from ``ranges``."""
    uniform = lambda pair: float(rng.uniform(pair[0], pair[1]))  # noqa: E731
    plane = str(ranges.planes[int(rng.integers(len(ranges.planes)))])
    thickness, gap = uniform(ranges.thickness), uniform(ranges.gap)
    offset = min(uniform(ranges.offset_fraction), 0.999) * (thickness + gap)
    return ThickSliceParams(
        plane=plane,
        thickness=thickness,
        gap=gap,
        offset=offset,
        inplane_blur=uniform(ranges.inplane_blur),
        noise_amplitude=uniform(ranges.noise_amplitude),
        noise_smoothness=uniform(ranges.noise_smoothness),
        threshold=uniform(ranges.threshold),
        interpolation=_interpolation(rng, ranges.interpolation),
    )


def _interpolation(rng: np.random.Generator, choice) -> str:
    """A fixed interpolation, or one drawn from a tuple (the draw happens only for a tuple)."""
    if isinstance(choice, str):
        return choice
    return str(choice[int(rng.integers(len(choice)))])


def slab_weights(n: int, spacing: float, params: ThickSliceParams):
    """Partial-volume weights of each voxel (along the through-plane axis) in each slab.

    Returns:
        ``(weights, centres)``: weights (n_slabs, n) with rows summing to 1, and the slab
        centres in mm from the grid edge.
    """
    period = params.thickness + params.gap
    starts = np.arange(params.offset - period, n * spacing, period)
    starts = starts[starts + params.thickness > 0]
    lo = np.arange(n) * spacing
    overlap = np.clip(
        np.minimum(lo + spacing, starts[:, None] + params.thickness) - np.maximum(lo, starts[:, None]),
        0.0,
        None,
    )
    keep = overlap.sum(1) > 0
    overlap, starts = overlap[keep], starts[keep]
    return overlap / overlap.sum(1, keepdims=True), starts + params.thickness / 2.0


def _checked(mask, spacing, params, rng) -> tuple[np.ndarray, np.random.Generator]:
    """:func:`simulate_thick_slice`'s arguments checked: one InputError naming a bad one."""
    mask = np.asarray(mask)
    if mask.ndim != 3 or mask.dtype.kind not in "biuf":
        raise InputError(f"mask must be a 3D (Z, Y, X) array of numbers; got shape {mask.shape}, {mask.dtype}")
    check_mask(mask, "mask")  # NaN or negative voxels were silently background: an all-zero result
    if not (is_number(spacing) and spacing > 0):
        raise InputError(f"spacing {spacing!r} must be one positive number of mm (the grid is isotropic)")
    if not isinstance(params, ThickSliceParams):
        raise InputError(f"params={params!r:.60}: expected ThickSliceParams(...)")
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng={rng!r:.60}: expected a numpy Generator, e.g. np.random.default_rng(0)")
    return mask, rng


def simulate_thick_slice(
    mask: np.ndarray, spacing: float, params: ThickSliceParams, rng: np.random.Generator
) -> np.ndarray:
    """Simulate a thick-slice segmentation of ``mask`` resampled back to its grid.

    Args:
        mask: High-quality binary mask (Z, Y, X) on an isotropic grid (nonzero = foreground; finite,
            non-negative values).
        spacing: Isotropic voxel spacing in mm.
        params: Acquisition settings.
        rng: Source of the boundary noise.

    Returns:
        The low-quality mask, uint8 {0, 1}, same shape as ``mask``.

    Raises:
        InputError: For a mask that is not 3D, holds NaN/inf or negative values, or a bad spacing, params or rng.
    """
    mask, rng = _checked(mask, spacing, params, rng)
    axis = PLANE_AXES[params.plane]
    volume = np.moveaxis(np.asarray(mask, dtype=np.float32) > 0, axis, 0).astype(np.float32)
    n = volume.shape[0]
    weights, centres = slab_weights(n, spacing, params)
    slabs = np.tensordot(weights.astype(np.float32), volume, axes=(1, 0))
    if params.inplane_blur > 0:
        sigma = params.inplane_blur / spacing
        slabs = ndimage.gaussian_filter(slabs, (0.0, sigma, sigma))
    if params.noise_amplitude > 0:
        noise = rng.standard_normal(slabs.shape).astype(np.float32)
        sigma_in = params.noise_smoothness / spacing
        sigma_through = params.noise_smoothness / (params.thickness + params.gap)
        noise = ndimage.gaussian_filter(noise, (sigma_through, sigma_in, sigma_in))
        noise *= params.noise_amplitude / max(float(noise.std()), 1e-6)
        band = np.clip(8.0 * slabs * (1.0 - slabs), 0.0, 1.0)  # noise only near boundaries
        slabs += noise * band
    centres_vox = centres / spacing - 0.5  # slab centres in voxel-index units
    positions = np.arange(n)
    if params.interpolation == "nearest":
        nearest = np.abs(positions[:, None] - centres_vox[None, :]).argmin(1)
        resampled = slabs[nearest] >= params.threshold
    elif len(centres_vox) == 1:
        resampled = np.broadcast_to(slabs[:1] >= params.threshold, slabs.shape[:0] + (n,) + slabs.shape[1:])
    else:
        upper = np.clip(np.searchsorted(centres_vox, positions), 1, len(centres_vox) - 1)
        lower = upper - 1
        span = centres_vox[upper] - centres_vox[lower]
        frac = np.clip((positions - centres_vox[lower]) / span, 0.0, 1.0)[:, None, None]
        resampled = slabs[lower] * (1 - frac) + slabs[upper] * frac >= params.threshold
    return np.ascontiguousarray(np.moveaxis(resampled, 0, axis)).astype(np.uint8)
