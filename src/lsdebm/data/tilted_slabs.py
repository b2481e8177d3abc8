"""Thick slices resampled onto a grid they are oblique to: find the tilted slabs.

:func:`lsdebm.data.acquisition.detect_staircase` finds slabs that run along an array axis. An MRI
mask put on a CT's grid with a few degrees between them has its staircase along no array axis,
so the acquisition falls back to the input's own voxels and the output is the input
(docs/real-anatomy.md, "Slabs oblique to the grid"). :func:`find_tilted_slabs` finds such slabs:

1. the mask's inner and outer boundary voxels (both, so that faces of either orientation sit
   symmetrically about their plane) are projected on candidate normals, 4° then 1° apart, up to
   30° from each array axis (tilts from 1.5°; below, a face wanders by less than 2.5 mm over a
   vertebra, and the slabs are read along the array axis, :mod:`lsdebm.data.acquisition`);
2. the projections' histogram, minus its 8 mm moving average (the vertebra's own shape), is
   searched for a period of 2-10 mm; the best normal holds the strongest period;
3. the period is refined by the unfiltered histogram's Fourier sum within ±4 %, and a slab face's
   position is read from its phase;
4. the slabs are verified: two sections straddling a slab face differ far more than two sections
   the same distance apart inside one slab (``contrast``). On the shipped high-quality masks the
   ratio is at most 2.4; on tilted 5 and 7 mm slabs it is 4.5 and above.

:mod:`lsdebm.tasks.tilted` then refines such an input on its own slab grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lsdebm.data.boxes import bounding_box

MAX_POINTS = 30_000
MAX_BOX_VOXELS = 32_000_000  # beyond this the boundary pass is skipped (a whole-body map): no finding
BIN_MM = 0.25
HIGH_PASS_MM = 8.0
PERIOD_RANGE_MM = (2.0, 10.0)
MAX_TILT_DEG = 30.0
MIN_TILT_DEG = 0.5  # the search's inner edge; a normal found within a degree of it is an array axis (aligned slabs)
MIN_VOXELS_PER_SLAB = 3.0
MIN_CONTRAST = 3.5
NFFT = 8192
FREQS = np.fft.rfftfreq(NFFT, BIN_MM)
BAND = (FREQS >= 1 / PERIOD_RANGE_MM[1]) & (FREQS <= 1 / PERIOD_RANGE_MM[0])


@dataclass(frozen=True)
class TiltedSlabs:
    """Slabs found along a normal that is no array axis.

    Attributes:
        normal: Unit slab normal in world coordinates.
        axis: The array axis it is closest to.
        tilt_deg: Angle between the normal and that axis.
        thickness_mm: Slab period.
        face_mm: Position of one slab face along ``normal`` (world mm from the origin).
        contrast: The verification ratio (see the module doc).
    """

    normal: tuple
    axis: int
    tilt_deg: float
    thickness_mm: float
    face_mm: float
    contrast: float

    def describe(self) -> str:
        return (f"its slabs are tilted by {self.tilt_deg:.0f}° against array axis {self.axis} "
                f"({self.thickness_mm:.1f} mm thick; a thick-slice mask resampled onto a grid oblique to them): "
                f"refined on their own slab grid, then resampled onto the output grid")


def _directions(unit_axes: np.ndarray, axis: int | None = None, around=None, step_deg: float = 4.0):
    """Candidate normals ``(normal, axis, (u, v))``: a grid of tilts about each array axis, or about ``around``."""
    out = []
    for a in range(3) if around is None else (axis,):
        e, b, c = unit_axes[:, a], unit_axes[:, (a + 1) % 3], unit_axes[:, (a + 2) % 3]
        if around is None:
            g = np.radians(np.arange(-MAX_TILT_DEG, MAX_TILT_DEG + 1e-9, step_deg))
            uu, vv = np.meshgrid(g, g)
        else:
            g = np.radians(np.arange(-2 * step_deg, 2 * step_deg + 1e-9, step_deg / 4))
            uu, vv = np.meshgrid(around[0] + g, around[1] + g)
        for u, v in zip(uu.ravel(), vv.ravel()):
            if not np.radians(MIN_TILT_DEG) <= np.hypot(u, v) <= np.radians(MAX_TILT_DEG + 1):
                continue
            d = e + np.tan(u) * b + np.tan(v) * c
            out.append((d / np.linalg.norm(d), a, (u, v)))
    return out


def _boundary_points(mask: np.ndarray, affine: np.ndarray) -> np.ndarray | None:
    """World positions of (at most MAX_POINTS of) the inner and outer boundary voxels."""
    box = bounding_box(mask)
    if box is None:
        return None
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    if np.prod([s.stop - s.start for s in box]) > MAX_BOX_VOXELS:
        return None
    m = np.asarray(mask)[box] != 0
    edge = (m & ~ndimage.binary_erosion(m)) | (ndimage.binary_dilation(m) & ~m)
    idx = np.argwhere(edge).astype(np.float64) + [s.start for s in box]
    if len(idx) > MAX_POINTS:
        idx = idx[np.random.default_rng(0).choice(len(idx), MAX_POINTS, replace=False)]
    return idx @ affine[:3, :3].T + affine[:3, 3]


def _histogram(pts: np.ndarray, normal: np.ndarray) -> tuple[np.ndarray, float]:
    d = pts @ normal
    return np.bincount(((d - d.min()) / BIN_MM).astype(int)).astype(np.float64), float(d.min())


def _period(pts: np.ndarray, normal: np.ndarray) -> tuple[float, float]:
    """(strength, period in mm) of the strongest 2-10 mm period of the high-passed projection histogram."""
    h, _ = _histogram(pts, normal)
    width = int(round(HIGH_PASS_MM / BIN_MM)) | 1
    spectrum = np.abs(np.fft.rfft(h - ndimage.uniform_filter1d(h, width, mode="constant"), NFFT))[BAND]
    k = int(np.argmax(spectrum))
    return float(spectrum[k] / h.sum()), float(1 / FREQS[BAND][k])


def _refined(pts: np.ndarray, normal: np.ndarray, period: float) -> tuple[float, float]:
    """(period, face position along the normal in world mm) from the unfiltered histogram's Fourier sum."""
    h, start = _histogram(pts, normal)
    x = (np.arange(len(h)) + 0.5) * BIN_MM
    periods = period * np.arange(0.96, 1.04 + 1e-9, 0.001)
    sums = np.exp(-2j * np.pi * x[None, :] / periods[:, None]) @ h
    i = int(np.argmax(np.abs(sums)))
    return float(periods[i]), start + float((-np.angle(sums[i]) / (2 * np.pi) * periods[i]) % periods[i])


def _contrast(mask, affine, normal, axis: int, period: float, face: float, pts: np.ndarray) -> float:
    """(1 - Dice of sections straddling a face) / (1 - Dice of sections as far apart inside one slab)."""
    lin = affine[:3, :3]
    spacing = float(np.linalg.norm(lin, axis=0).min())
    b = lin[:, (axis + 1) % 3] / np.linalg.norm(lin[:, (axis + 1) % 3])
    u = b - (b @ normal) * normal
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    pu, pv, pd = pts @ u, pts @ v, pts @ normal
    uu, vv = np.meshgrid(np.arange(pu.min(), pu.max() + spacing, spacing),
                         np.arange(pv.min(), pv.max() + spacing, spacing), indexing="ij")
    plane = (uu[..., None] * u + vv[..., None] * v).reshape(-1, 3)
    inv, m = np.linalg.inv(affine), np.asarray(mask) != 0

    def section(t: float) -> np.ndarray:
        idx = np.rint((plane + t * normal) @ inv[:3, :3].T + inv[:3, 3]).astype(int)
        inside = np.all((idx >= 0) & (idx < m.shape), axis=1)
        out = np.zeros(len(idx), bool)
        out[inside] = m[tuple(idx[inside].T)]
        return out

    half = period / 2 - spacing
    sums = np.zeros(4)
    for k in range(int(np.floor((pd.min() - face) / period)) - 1, int(np.ceil((pd.max() - face) / period)) + 1):
        centre = face + (k + 0.5) * period
        for j, mid in ((0, centre), (2, centre + period / 2)):  # inside one slab; across its upper face
            a, c = section(mid - half), section(mid + half)
            sums[j] += 2 * np.sum(a & c)
            sums[j + 1] += a.sum() + c.sum()
    inside_dice, across_dice = sums[0] / max(sums[1], 1), sums[2] / max(sums[3], 1)
    return float((1 - across_dice) / max(1 - inside_dice, 1e-6))


def find_tilted_slabs(mask: np.ndarray, affine) -> TiltedSlabs | None:
    """Slabs along a normal 1.5-30° from every array axis (see the module doc), or None."""
    affine = np.asarray(affine, float)
    pts = _boundary_points(mask, affine)
    if pts is None or len(pts) < 100:
        return None
    unit = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    best = max(((*_period(pts, n), n, a, uv) for n, a, uv in _directions(unit)), key=lambda r: r[0])
    best = max(((*_period(pts, n), n, a, uv) for n, a, uv in _directions(unit, best[3], best[4])),
               key=lambda r: r[0])
    _, period, normal, axis, _ = best
    period, face = _refined(pts, normal, period)
    spacing = float(np.linalg.norm(affine[:3, :3], axis=0).min())
    tilt = float(np.degrees(np.arccos(min(1.0, abs(float(normal @ unit[:, axis]))))))
    if period < MIN_VOXELS_PER_SLAB * spacing or tilt < MIN_TILT_DEG + 1.0:
        return None  # at the search's inner edge the best normal is an array axis: aligned slabs, not tilted ones
    contrast = _contrast(mask, affine, normal, axis, period, face, pts)
    if contrast < MIN_CONTRAST:
        return None
    return TiltedSlabs(tuple(float(x) for x in normal), int(axis), tilt, period, face, contrast)


def or_tilted(acquisition, mask: np.ndarray, affine):
    """``acquisition``, or the tilted slabs found when it is the input grid itself (no thick slices found)."""
    return acquisition if acquisition.thick_slice else (find_tilted_slabs(mask, affine) or acquisition)
