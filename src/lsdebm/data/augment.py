"""Spatial augmentation of a mask in world space: rigid pose, scale, smooth elastic warp, flip.

Applied to real masks and phantoms alike before the thick-slice simulation, so that the
acquisition stays aligned with the scanner while the anatomy moves (a tilted vertebra is
sliced obliquely, as in a real scan). Everything happens about the structure's centroid on the
mask's own (isotropic) grid, which must have room around the structure (see
:func:`lsdebm.data.real.isotropic`'s ``pad_mm``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from lsdebm.data.validate import range_checked
from lsdebm.errors import InputError

#: The :class:`AugmentRanges` fields: (low, high, unit in the message).
_RANGES = {
    "rotation_deg": (0.0, 180.0, " of degrees"),
    "scale": (0.0, 0.5, ""),
    "elastic_mm": (0.0, 10.0, " of mm"),
    "elastic_smoothness_mm": (1.0, 50.0, " of mm"),
    "flip": (0.0, 1.0, " (a probability)"),
}


@dataclass(frozen=True)
class AugmentRanges:
    """Ranges of the random spatial augmentation.

    Attributes:
        rotation_deg: Maximum rotation about each world axis (uniform in +-value).
        scale: Maximum relative isotropic scale change (uniform in 1 +- value).
        elastic_mm: Standard deviation of the smooth displacement field in mm (0 = off).
        elastic_smoothness_mm: Correlation length (Gaussian sigma) of that field in mm.
        flip: Probability of a left-right mirror.
    """

    rotation_deg: float = 15.0
    scale: float = 0.10
    elastic_mm: float = 1.5
    elastic_smoothness_mm: float = 10.0
    flip: float = 0.5

    def __post_init__(self):
        for name, bounds in _RANGES.items():  # numpy scalars stored as floats, as ThickSliceParams does
            object.__setattr__(self, name, range_checked("AugmentRanges", name, getattr(self, name), *bounds))


def rotation_matrix(degrees) -> np.ndarray:
    """World rotation from angles (degrees) about the x (L-R), y (A-P) and z (S-I) axes."""
    ax, ay, az = np.radians(np.asarray(degrees, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_warp(mask: np.ndarray, affine: np.ndarray, rng: np.random.Generator,
                ranges: AugmentRanges = AugmentRanges()) -> np.ndarray:
    """One random augmentation of ``mask`` (isotropic grid ``affine``), on the same grid.

    Output voxel at world ``y`` takes the input at ``c + M^-1 (y - c) + d(y)``, with ``c`` the
    centroid, ``M = s R F`` (scale, rotation, optional left-right flip) and ``d`` a smooth
    random displacement. Returns a uint8 {0, 1} mask.
    """
    mask = np.asarray(mask)
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if mask.ndim != 3 or not mask.any():
        raise InputError("augmentation needs a non-empty 3D mask")
    if not np.allclose(spacing, spacing[0], rtol=1e-3):
        raise InputError(f"augmentation needs an isotropic grid; got spacing {tuple(np.round(spacing, 4))} mm")
    rot = rotation_matrix(rng.uniform(-ranges.rotation_deg, ranges.rotation_deg, 3))
    scale = rng.uniform(1 - ranges.scale, 1 + ranges.scale)
    flip = np.diag([-1.0 if rng.random() < ranges.flip else 1.0, 1.0, 1.0])
    inverse = np.linalg.inv(scale * rot @ flip)
    centre_vox = np.argwhere(mask).mean(0)
    centre = affine[:3, :3] @ centre_vox + affine[:3, 3]
    # voxel -> voxel map of the linear part: A^-1 (c + M^-1 (A v + t - c))
    a_inv = np.linalg.inv(affine)
    lin = a_inv[:3, :3] @ inverse @ affine[:3, :3]
    off = a_inv[:3, :3] @ (centre + inverse @ (affine[:3, 3] - centre)) + a_inv[:3, 3]
    return _sample(mask, lin, off, _displacement(mask.shape, float(spacing[0]), rng, ranges))


def _sample(mask: np.ndarray, lin: np.ndarray, off: np.ndarray, displacement) -> np.ndarray:
    """Trilinear sampling of ``mask`` at voxel coordinates ``lin @ v + off + displacement(v)``.

    Done by ``torch.nn.functional.grid_sample`` (an order of magnitude faster than scipy's
    ``map_coordinates`` on 2M voxels); outside the grid is background.
    """
    shape = mask.shape
    axes = [torch.arange(n, dtype=torch.float32) for n in shape]
    v = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (D, H, W, 3) voxel indices
    coords = v @ torch.as_tensor(lin, dtype=torch.float32).T + torch.as_tensor(off, dtype=torch.float32)
    if displacement is not None:
        coords += displacement
    size = torch.tensor([n - 1 for n in shape], dtype=torch.float32).clamp(min=1)
    grid = (2 * coords / size - 1).flip(-1)[None]  # grid_sample wants (x, y, z) = (W, H, D)
    src = torch.as_tensor(np.asarray(mask, dtype=np.float32))[None, None]
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return (out[0, 0] >= 0.5).numpy().astype(np.uint8)


def _displacement(shape, spacing: float, rng: np.random.Generator, ranges: AugmentRanges):
    """A smooth random displacement field in voxels, (D, H, W, 3), built on a coarse grid; None if off."""
    if ranges.elastic_mm <= 0:
        return None
    step = max(1, int(round(ranges.elastic_smoothness_mm / spacing / 2)))
    coarse = tuple(int(np.ceil(n / step)) + 1 for n in shape)
    sigma = ranges.elastic_smoothness_mm / spacing / step
    fields = []
    for _ in range(3):
        field = ndimage.gaussian_filter(rng.standard_normal(coarse), sigma, mode="wrap")
        fields.append(field * (ranges.elastic_mm / spacing / max(float(field.std()), 1e-6)))
    coarse_t = torch.as_tensor(np.stack(fields), dtype=torch.float32)[None]
    full = F.interpolate(coarse_t, size=tuple(c * step for c in coarse), mode="trilinear", align_corners=False)
    return full[0, :, : shape[0], : shape[1], : shape[2]].permute(1, 2, 3, 0).contiguous()
