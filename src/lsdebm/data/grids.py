"""Output grids for reconstructions: isotropic over the input's field of view, or another image's.

A thick-slice mask (e.g. 1 x 1 x 4 mm sagittal slabs) refined by the model has through-plane
detail its own grid cannot hold. :func:`output_grid` picks the grid a result is written on:

1. ``like``: another NIfTI's grid (e.g. the high-resolution image the mask belongs to);
2. ``out_spacing``: an isotropic grid at that spacing over the input's field of view;
3. an anisotropic input: an isotropic grid at its finest spacing;
4. otherwise ``None``: keep the input grid.

Isotropic grids keep the input's axis directions (orientation) and its outer voxel edges, so
voxel centres shift by half the difference of old and new spacing at the first edge.
"""
from __future__ import annotations

import math
import os

import numpy as np

from lsdebm.errors import InputError
from lsdebm.limits import array_bytes, check_memory

MAX_OUTPUT_VOXELS = 2 ** 29
SPACING_LIMIT_MM = 20.0


def _spacing(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)


def is_anisotropic(affine, tolerance: float = 1.2) -> bool:
    """Whether the voxel spacing differs between axes by more than ``tolerance`` (max / min)."""
    spacing = _spacing(affine)
    return bool(spacing.max() / spacing.min() > tolerance)


GRID_SLACK = 1e-3  # new voxels: an extent this close to a whole number of them is that number


def isotropic_grid(shape, affine, spacing: float | None = None) -> tuple[tuple[int, ...], np.ndarray]:
    """An isotropic grid with the input's orientation and field of view (outer voxel edges).

    Along each axis the extent ``n * s`` is covered by ``ceil(n * s / spacing)`` new voxels;
    when that does not divide evenly the new grid overhangs both ends by the same amount.

    Args:
        shape: Input grid shape (3 ints).
        affine: Input 4x4 voxel-to-world affine.
        spacing: New voxel size in mm (default: the finest input spacing).

    Returns:
        ``(shape, affine)`` of the new grid.
    """
    affine = np.asarray(affine, float)
    old = _spacing(affine)
    new = float(old.min() if spacing is None else spacing)
    directions = affine[:3, :3] / old
    extent = np.asarray(shape[:3], float) * old
    # a thousandth of a voxel of slack: a header's float32 sform makes a 1 mm axis 1.00000003 mm, which over 64
    # voxels is 64.000002 new voxels; a strict ceil added a 65th and shifted every centre by half a voxel
    counts = np.maximum(1, np.ceil(extent / new - GRID_SLACK)).astype(int)
    overhang = (counts * new - extent) / 2.0
    first_edge = affine[:3, :3] @ np.full(3, -0.5) + affine[:3, 3]
    out = np.eye(4)
    out[:3, :3] = directions * new
    out[:3, 3] = first_edge + directions @ (new / 2.0 - overhang)
    return tuple(int(c) for c in counts), out


def given_grid(shape, affine, out_grid=None) -> tuple[tuple[int, ...], np.ndarray]:
    """``out_grid`` = ``(shape, affine)`` as a tuple of ints and a float array; None: the input's own grid."""
    if out_grid is None:
        return tuple(int(v) for v in shape), np.asarray(affine, float)
    return tuple(int(v) for v in out_grid[0]), np.asarray(out_grid[1], float)


def like_grid(path: str | os.PathLike) -> tuple[tuple[int, ...], np.ndarray]:
    """The grid ``(shape, affine)`` of another NIfTI file, from its header (a 4D series lends its first three axes;
    read errors are one-line InputErrors)."""
    from lsdebm.data.nifti import read_grid

    return read_grid(path)


def check_out_spacing(value: float) -> float:
    """``value`` as an output spacing in mm: finite, > 0 and <= 20 mm, else an InputError."""
    value = float(value)
    if not (math.isfinite(value) and 0.0 < value <= SPACING_LIMIT_MM):
        raise InputError(f"--out-spacing {value:g} must be > 0 and <= {SPACING_LIMIT_MM:g} mm")
    return value


def check_grid_size(shape, what: str = "the output grid") -> None:
    """Refuse an output grid above :data:`MAX_OUTPUT_VOXELS` voxels or the memory limit."""
    voxels = math.prod(int(v) for v in shape)
    dims = " x ".join(str(int(v)) for v in shape)
    if voxels > MAX_OUTPUT_VOXELS:
        raise InputError(f"{what} ({dims} = {voxels:,} voxels) is larger than {MAX_OUTPUT_VOXELS:,} voxels; "
                         "pass a larger --out-spacing or --native-grid")
    check_memory(array_bytes(shape, 4), f"{what} ({dims})")


def output_grid(shape, affine, out_spacing: float | None = None, like=None):
    """The grid a reconstruction is written on (see the module docstring for the rule).

    Args:
        shape: Input grid shape.
        affine: Input 4x4 affine.
        out_spacing: Isotropic output spacing in mm.
        like: A NIfTI path whose grid to use, or a ``(shape, affine)`` pair; wins over ``out_spacing``.

    Returns:
        ``(shape, affine)``, or None to keep the input grid.

    Raises:
        InputError: For a bad spacing, an unreadable ``like`` file or a grid too large for memory.
    """
    if like is not None:
        grid = like_grid(like) if isinstance(like, (str, os.PathLike)) else \
            (tuple(int(v) for v in like[0]), np.asarray(like[1], float))
    elif out_spacing is not None:
        grid = isotropic_grid(shape, affine, check_out_spacing(out_spacing))
    elif is_anisotropic(affine):
        grid = isotropic_grid(shape, affine)
    else:
        return None
    check_grid_size(grid[0])
    return grid


def share_on_grid(mask: np.ndarray, affine, grid, max_points: int = 200_000) -> float:
    """The share of ``mask``'s nonzero voxels (their centres; at most ``max_points`` of them, evenly spaced)
    that fall inside ``grid`` = ``(shape, affine)``; 1.0 for an empty mask."""
    voxels = np.argwhere(np.asarray(mask) != 0)
    if not len(voxels):
        return 1.0
    from lsdebm.data.frame import in_crop_index

    index = in_crop_index(voxels[:: max(1, len(voxels) // max_points)], affine, grid[1])
    inside = np.all((index >= -0.5) & (index <= np.asarray(grid[0][:3], float) - 0.5), axis=1)
    return float(inside.mean())


def check_grid_holds(mask: np.ndarray, affine, grid, what: str, expected: str) -> None:
    """Refuse an output ``grid`` that holds none of ``mask``'s voxels (the result would be empty), and warn when
    it cuts some of them; ``what`` names the grid's source (``--like FILE``, ``out_grid``)."""
    import warnings

    from lsdebm.errors import InputWarning

    share = share_on_grid(mask, affine, grid)
    if share == 0:
        raise InputError(f"{what}: its grid does not hold any of the structures to refine (none of their voxels "
                         f"lies in its field of view); expected {expected}")
    if share < 0.99:
        warnings.warn(f"{what}: only {share:.0%} of the structures' voxels lie in its field of view; the result is "
                      "cut at its edges", InputWarning, stacklevel=3)


def describe_grid(shape, affine) -> str:
    """``"103x79x104 at 1x1x1 mm"`` for log lines."""
    spacing = "x".join(f"{v:g}" for v in np.round(_spacing(affine), 3))
    return f"{'x'.join(str(int(v)) for v in shape)} at {spacing} mm"
