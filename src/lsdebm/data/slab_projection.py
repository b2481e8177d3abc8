"""Data consistency on the output grid: the refined probabilities must agree with the observed slabs.

The refinement works on a coarse model grid (2 mm) and knows anatomy; the input knows, at its
own in-plane resolution, which slab columns were foreground. Under the thick-slice model a slab
column (one in-plane pixel, one slab) was observed as foreground when the mean occupancy of the
column was at least one half. :func:`project_to_slabs` makes the refined probabilities satisfy
that, column by column, with the smallest change in logit space: a column observed as
foreground whose mean probability is below ``0.5 + margin`` gets one common logit shift that
lifts its mean to ``0.5 + margin`` (and the reverse for background). The shape *within* a slab
(where in the slab the boundary lies, the through-plane detail) stays the model's; *which*
columns are bone follows the observation. ``weight`` scales the shift (0 = off, 1 = full
projection).

Before the projection the model's logits can be combined (a product of experts, weight
``interpolation``) with the classical shape-based interpolation of the observation
(:func:`interpolate_slabs`: signed distances of each slab's in-plane mask, interpolated linearly
between slab centres), which knows nothing of anatomy but places through-plane boundaries
smoothly between observed slabs.

It needs the output grid's axes parallel to the input's (true for the input grid and for the
isotropic grid of :func:`lsdebm.data.grids.isotropic_grid`); on another orientation it is
skipped and says so.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.special import expit

from lsdebm.data.acquisition import Acquisition
from lsdebm.data.boxes import BoxedVolume, bounding_box, box_affine, grown_box, mapped_box, resample_boxed, union_box
from lsdebm.data.frame import CropInfo, beyond_crop, in_crop_index, paste_probabilities

LOGIT_CLIP = 12.0
BISECTION_STEPS = 24


def aligned_axis(in_affine, out_affine, axis: int, atol: float = 1e-3, rtol: float = 1e-5) -> int | None:
    """The output array axis parallel to input ``axis`` (None if the grids are not axis-aligned: some axis's
    largest |cos| with the other grid's axes is further from 1 than ``np.allclose(atol, rtol)`` allows)."""
    a = np.asarray(in_affine, float)[:3, :3]
    b = np.asarray(out_affine, float)[:3, :3]
    a = a / np.linalg.norm(a, axis=0)
    b = b / np.linalg.norm(b, axis=0)
    cos = np.abs(a.T @ b)
    if not np.allclose(np.sort(cos, axis=1)[:, -1], 1.0, atol=atol, rtol=rtol):
        return None
    return int(np.argmax(cos[axis]))


def slab_ids(acq: Acquisition, in_affine, out_shape, out_affine, out_axis: int) -> np.ndarray:
    """Slab index of every output slice along ``out_axis`` (from the slice centre's input position)."""
    n = out_shape[out_axis]
    index = np.zeros((4, n))
    index[out_axis] = np.arange(n)
    index[3] = 1.0
    world = np.asarray(out_affine, float) @ index
    src = np.linalg.inv(np.asarray(in_affine, float)) @ world
    spacing = float(np.linalg.norm(np.asarray(in_affine, float)[:3, acq.axis]))
    return acq.slab_of((src[acq.axis] + 0.5) * spacing)


def central_slices(ids: np.ndarray) -> np.ndarray:
    """Per slice, the index of its slab's central slice: the slice a slab's in-plane mask is read from.

    A staircase resampled twice (slabs onto a 1.5 mm grid, that grid onto 1 mm) can show the
    neighbouring slab in a slice near a slab's edge; the central slice is the slab's own.
    """
    ids = np.asarray(ids)
    out = np.empty(len(ids), np.intp)
    for s in np.unique(ids):
        rows = np.flatnonzero(ids == s)
        out[rows] = rows[len(rows) // 2]
    return out


def interpolate_slabs(observed: np.ndarray, ids: np.ndarray, axis: int, spacing_mm, tau_mm: float = 1.0):
    """Shape-based interpolation of a slab observation: a probability map on the same grid.

    Each slab's in-plane mask (its central slice) becomes a signed distance map in mm
    (negative inside); the maps are interpolated linearly between slab centres along ``axis``
    (held constant beyond the first and last) and mapped to probabilities with a logistic of
    width ``tau_mm``.
    """
    y = np.moveaxis(np.asarray(observed) != 0, axis, 0)
    inplane = [float(s) for i, s in enumerate(spacing_mm) if i != axis]
    central = central_slices(ids)
    centres, sdf = [], []
    for s in np.unique(ids):
        rows = np.flatnonzero(ids == s)
        mask = y[central[rows[0]]]
        inside = ndimage.distance_transform_edt(mask, sampling=inplane) if mask.any() else np.zeros(mask.shape)
        outside = ndimage.distance_transform_edt(~mask, sampling=inplane) if mask.any() else np.full(mask.shape, 1e3)
        sdf.append((outside - inside).astype(np.float32))
        centres.append(rows.mean())
    # slab ids fall along the axis when the output axis runs against the input's (an LPS file, --like
    # a RAS image): interpolate between centres in the order they lie on this grid
    order = np.argsort(centres)
    sdf, centres = np.stack(sdf)[order], np.asarray(centres)[order]
    pos = np.arange(y.shape[0], dtype=np.float64)
    upper = np.clip(np.searchsorted(centres, pos), 1, max(len(centres) - 1, 1))
    lower = upper - 1 if len(centres) > 1 else upper * 0
    span = np.where(centres[upper] > centres[lower], centres[upper] - centres[lower], 1.0)
    frac = np.clip((pos - centres[lower]) / span, 0.0, 1.0)[:, None, None].astype(np.float32)
    dist = sdf[lower] * (1 - frac) + sdf[upper] * frac
    return np.moveaxis(_sigmoid(-dist / tau_mm), 0, axis)


def _logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _sigmoid(x):
    return expit(x)


def _column_shift(logits: np.ndarray, target: np.ndarray, raise_: np.ndarray) -> np.ndarray:
    """Per column (axis 0 = the slab's slices), the logit shift that brings the mean to ``target``."""
    lo = np.where(raise_, 0.0, -2 * LOGIT_CLIP)
    hi = np.where(raise_, 2 * LOGIT_CLIP, 0.0)
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        above = _sigmoid(logits + mid).mean(0) > target
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    return (lo + hi) / 2


def project_to_slabs(probs: np.ndarray, observed: np.ndarray, ids: np.ndarray, axis: int,
                     weight: float = 1.0, margin: float = 0.02) -> np.ndarray:
    """Project ``probs`` onto the slab observations (see the module doc). Arrays share one grid.

    Args:
        probs: Refined probabilities on the output grid.
        observed: The input's foreground resampled (nearest) onto the same grid.
        ids: Slab index of each slice along ``axis`` (:func:`slab_ids`).
        axis: The output axis the slabs stack along.
        weight: Fraction of the shift applied (0 = unchanged, 1 = every column consistent).
        margin: How far past one half the column mean is moved.
    """
    if weight <= 0:
        return probs
    p = np.moveaxis(np.asarray(probs, np.float32), axis, 0)
    y = np.moveaxis(np.asarray(observed) != 0, axis, 0)
    out = p.copy()
    logits = np.log(np.clip(p, 1e-6, 1 - 1e-6)) - np.log1p(-np.clip(p, 1e-6, 1 - 1e-6))
    for s in np.unique(ids):
        rows = ids == s
        seen = y[rows].mean(0) >= 0.5
        mean = p[rows].mean(0)
        need = np.where(seen, mean < 0.5 + margin, mean > 0.5 - margin)
        if not need.any():
            continue
        l_cols = logits[rows][:, need]
        shift = _column_shift(l_cols, np.where(seen[need], 0.5 + margin, 0.5 - margin), seen[need])
        block = out[rows]
        block[:, need] = _sigmoid(l_cols + weight * shift)
        out[rows] = block
    return np.moveaxis(out, 0, axis)


def observed_boxed(source_mask) -> BoxedVolume:
    """A structure's observed foreground (an input-grid mask, or a :class:`BoxedVolume` of one) as uint8 on
    its box grown by one background voxel, so that nearest-neighbour sampling at the box edge reads what it
    reads on the whole grid."""
    if not isinstance(source_mask, BoxedVolume):
        source_mask = BoxedVolume.around(np.asarray(source_mask) != 0, 1)
    elif source_mask.values.dtype == np.uint8:
        return source_mask  # already the observation (measured_output hands it on to the projection)
    return BoxedVolume(source_mask.shape, source_mask.box, np.asarray(source_mask.values != 0, np.uint8))


def slab_pad(acq: Acquisition, out_affine) -> list[int]:
    """Output voxels per axis that hold one whole slab and one voxel more: how far the projection's box
    reaches past the structure, so that every slab it touches is whole.

    A found thickness carries the least-squares fit's rounding (5 mm reads 4.999999999999998 or
    5.000000000000008 mm depending on where the volume starts); the pad must not change with it, since
    SlabNet's box is cut to the projection's and the network is not shift-invariant by one voxel.
    """
    spacing = np.linalg.norm(np.asarray(out_affine, float)[:3, :3], axis=0)
    return [int(np.ceil(acq.thickness_mm / float(s) - 1e-6)) + 1 for s in spacing]


def consistent_probabilities(probs: np.ndarray, source_mask, in_affine, acq: Acquisition | None,
                             out_shape, out_affine, weight: float = 1.0, margin: float = 0.02,
                             interpolation: float = 0.0, interpolator=None):
    """:func:`project_to_slabs` for one structure, on the box it occupies; returns (probs, note).

    With ``interpolation`` > 0 the logits are first summed with ``interpolation`` times those of
    the slab interpolation (a product of experts): ``interpolator`` when given (the learned one,
    :class:`lsdebm.methods.slab.SlabInterpolator`: ``(observed box, box affine, in_affine, acq,
    axis, source=input mask) -> logits``), else the classical :func:`interpolate_slabs`.

    ``source_mask`` is the structure's observed foreground on the input grid (``in_affine``), whole
    or as a :class:`BoxedVolume`. The note says what was done (or why nothing was).
    """
    if acq is None or (weight <= 0 and interpolation <= 0):
        return probs, "off" if acq is not None else "no acquisition known"
    axis = aligned_axis(in_affine, out_affine, acq.axis)
    if axis is None:
        return probs, "skipped: the output grid is not parallel to the slabs"
    # resampled only around the structure: on a label map of a spine, or an output grid finer than the
    # input, the whole volume is many times the structure's box
    source = observed_boxed(source_mask)
    observed = resample_boxed(source, in_affine, tuple(out_shape), out_affine, order=0)
    active = (probs > 0.01) | (observed > 0)
    if not active.any():
        return probs, "nothing to project"
    sl = bounding_box(active, slab_pad(acq, out_affine))
    ids = slab_ids(acq, in_affine, out_shape, out_affine, axis)[sl[axis]]
    out = np.array(probs, np.float32, copy=True)
    box = out[sl]
    how = ""
    if interpolation > 0:
        if interpolator is not None and acq.thick_slice:  # a learned model of slabs, not of single voxels
            shape_logit = interpolator(observed[sl], box_affine(out_affine, sl), in_affine, acq, axis, source=source)
            how = f" (learned interpolation {getattr(interpolator, 'name', 'model')} x{interpolation:g})"
        else:
            spacing = np.linalg.norm(np.asarray(out_affine, float)[:3, :3], axis=0)
            shape_logit = _logit(interpolate_slabs(observed[sl], ids, axis, spacing))
            how = f" (shape interpolation x{interpolation:g})"
        box = _sigmoid(_logit(box) + interpolation * shape_logit).astype(np.float32)
    out[sl] = project_to_slabs(box, observed[sl], ids, axis, weight, margin)
    done = "projected onto" if weight > 0 else "interpolated along"
    return out, f"{done} {acq.describe()}{how}"


def _beyond_model_view(source: BoxedVolume, in_affine, info: CropInfo, grid: int) -> bool:
    """Whether observed voxels of ``source`` (grid ``in_affine``) lie outside the model crop ``info``."""
    voxels = np.argwhere(source.values) + np.array([s.start for s in source.box])
    return beyond_crop(in_crop_index(voxels, in_affine, info.crop_affine), grid)


def measured_output(probs, info: CropInfo, observed, in_affine, acq: Acquisition | None, ccfg,
                    out_shape=None, out_affine=None, interpolator=None) -> tuple[BoxedVolume, str]:
    """Model-grid ``probs`` pasted onto the output grid, then :func:`consistent_probabilities`.

    The one output step of a reconstruction (``lsdebm reconstruct``, Compare, the explorer's
    result): ``observed`` is the structure's foreground on the input grid (``in_affine``; whole, or
    a :class:`BoxedVolume`; None without an acquisition), ``ccfg`` a
    :class:`lsdebm.config.ConsistencyConfig`; the output grid defaults to the input's;
    ``interpolator`` the learned slab interpolation (None: the classical one).

    Returns ``(probabilities, note)``: the probabilities as a :class:`BoxedVolume` of the output grid,
    computed only on the box that the crop and the observed structure reach, grown by a slab
    (:func:`slab_pad`, as the projection grows its own box, so that a slab cut by the crop's edge is
    still averaged whole): the same values as on the whole grid (zero outside), at the cost of the
    structure's box rather than of the grid (a vertebra of a whole-body label map).
    """
    shape = tuple(info.source_shape if out_shape is None else out_shape)
    affine = np.asarray(info.source_affine if out_affine is None else out_affine, dtype=np.float64)
    source = observed_boxed(observed) if observed is not None else None
    seen = source is not None and source.values.any()
    reach = union_box(mapped_box(tuple(slice(0, n) for n in np.shape(probs)), info.crop_affine, shape, affine),
                      mapped_box(source.box, in_affine, shape, affine) if seen else None)
    if reach is None:
        return BoxedVolume(shape, tuple(slice(0, 0) for _ in shape), np.zeros((0, 0, 0), np.float32)), \
            "nothing on the output grid"
    region = grown_box(reach, slab_pad(acq, affine) if acq is not None else 0, shape)
    sub_shape, sub_affine = tuple(s.stop - s.start for s in region), box_affine(affine, region)
    pasted = paste_probabilities(probs, info, sub_shape, sub_affine)
    if seen and _beyond_model_view(source, in_affine, info, np.shape(probs)[0]):
        # a structure larger than the model's field of view (a whole spine in one label): beyond that view the
        # model has no opinion (probability 0.5, logit 0), not "background"; the slabs decide there
        seen_by_model = paste_probabilities(np.ones(np.shape(probs), np.float32), info, sub_shape, sub_affine)
        pasted[seen_by_model < 0.5] = 0.5
    values, note = consistent_probabilities(pasted, source, in_affine, acq, sub_shape, sub_affine, ccfg.projection,
                                            ccfg.margin, ccfg.interpolation, interpolator)
    return BoxedVolume(shape, region, values), note
