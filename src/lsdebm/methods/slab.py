"""The learned slab interpolation as the output step uses it: observation box in, logits out.

:class:`SlabInterpolator` wraps a trained :class:`lsdebm.nn.slabnet.SlabNet` for
:func:`lsdebm.data.slab_projection.consistent_probabilities`, which fuses its logits with the
model's (a product of experts, weight ``consistency.interpolation``) before the projection onto
the observed slabs. SlabNet works at 1 mm: an output grid of another spacing is resampled to a
1 mm grid with the same axes over the same box and the logits come back linearly; the
observation on that grid is read from the input mask itself when it is given (one nearest-neighbour
step, so each 1 mm slice lies in the slab its centre falls in), else from the output grid.
"""
from __future__ import annotations

import numpy as np
import torch

from lsdebm.data.acquisition import Acquisition
from lsdebm.data.boxes import as_boxed, box_affine, resample, resample_boxed
from lsdebm.data.slab_features import BASE_CLIP, BOX_MARGIN, SLAB_SPACING_MM, slab_box, slab_features

SPACING_TOLERANCE = 0.05


def one_mm_grid(shape, affine) -> tuple[tuple[int, ...], np.ndarray]:
    """A grid of :data:`SLAB_SPACING_MM` with ``affine``'s axes covering the same box as ``shape``."""
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    out_shape = tuple(max(int(np.ceil(n * s / SLAB_SPACING_MM)), 1) for n, s in zip(shape, spacing))
    out = affine.copy()
    out[:3, :3] = affine[:3, :3] / spacing * SLAB_SPACING_MM
    edge = affine[:3, 3] - 0.5 * affine[:3, :3].sum(axis=1)
    out[:3, 3] = edge + 0.5 * out[:3, :3].sum(axis=1)
    return out_shape, out


def align_to_slabs(shape, affine, in_affine, acq: Acquisition, axis: int) -> tuple[tuple[int, ...], np.ndarray]:
    """The 1 mm grid ``(shape, affine)`` moved back by under 1 mm along ``axis`` (one slice longer) so that
    the slab boundary nearest its middle falls on a slice edge.

    SlabNet was trained on 1 mm grids whose slices each lie in one slab; on a grid of another
    spacing the 1 mm slices would otherwise straddle slab boundaries at an arbitrary phase, and the
    slab each is given would flip with a hundredth of a millimetre of offset.
    """
    affine = np.asarray(affine, dtype=np.float64)
    step = np.zeros(4)
    step[axis] = 1.0
    corner = np.zeros(4)
    corner[axis], corner[3] = -0.5, 1.0  # the lower edge of slice 0
    to_input = np.linalg.inv(np.asarray(in_affine, dtype=np.float64)) @ affine
    in_spacing = float(np.linalg.norm(np.asarray(in_affine, dtype=np.float64)[:3, acq.axis]))
    p0 = (float((to_input @ corner)[acq.axis]) + 0.5) * in_spacing  # mm along the slabs, as Acquisition counts
    d = float((to_input @ step)[acq.axis]) * in_spacing  # +-1 mm per slice
    middle = p0 + d * shape[axis] / 2
    boundary = acq.offset_mm + acq.thickness_mm * np.round((middle - acq.offset_mm) / acq.thickness_mm)
    shift = (d * (boundary - p0)) % 1.0 - 1.0  # in [-1, 0) slices
    out = affine.copy()
    out[:3, 3] = affine[:3, 3] + shift * affine[:3, axis]
    grown = list(shape)
    grown[axis] += 1
    return tuple(grown), out


class SlabInterpolator:
    """Logits of the learned slab interpolation on a box of the output grid.

    Args:
        model: A trained SlabNet (eval mode) on the device it runs on.
        name: How notes and provenance name it (e.g. ``slabnet-default``).
    """

    def __init__(self, model: torch.nn.Module, name: str = "slabnet"):
        self.model, self.name = model, name

    def __call__(self, observed: np.ndarray, grid_affine, in_affine, acq: Acquisition, axis: int,
                 source: np.ndarray | None = None) -> np.ndarray:
        """Logits (float32, ``observed``'s shape) for ``observed`` on ``grid_affine``; slabs along ``axis``.

        ``source`` is the input mask (nonzero = observed, uint8 avoids a copy; whole or a
        :class:`lsdebm.data.boxes.BoxedVolume`) on ``in_affine`` that ``observed`` was resampled
        from; on an output grid that is not 1 mm SlabNet's own observation is resampled from it
        directly.

        The network runs on the box SlabNet was trained on (the observed foreground plus
        :data:`lsdebm.data.slab_features.BOX_MARGIN` voxels); farther out, at least that far from
        anything observed, the logit is the clipped background value of its input channel.
        """
        observed = np.asarray(observed) != 0
        out = np.full(observed.shape, -BASE_CLIP, np.float32)
        spacing = float(np.linalg.norm(np.asarray(grid_affine, float)[:3, :3], axis=0).min())
        box = slab_box(observed, int(np.ceil(BOX_MARGIN * SLAB_SPACING_MM / spacing - 1e-6)))
        if box is not None:
            out[box] = self._on_box(observed[box], box_affine(grid_affine, box), in_affine, acq, axis, source)
        return out

    def _on_box(self, observed: np.ndarray, grid_affine, in_affine, acq: Acquisition, axis: int,
                source: np.ndarray | None) -> np.ndarray:
        spacing = np.linalg.norm(np.asarray(grid_affine, float)[:3, :3], axis=0)
        if np.all(np.abs(spacing - SLAB_SPACING_MM) <= SPACING_TOLERANCE * SLAB_SPACING_MM):
            return self._logits(observed, grid_affine, in_affine, acq, axis)
        shape1, affine1 = align_to_slabs(*one_mm_grid(observed.shape, grid_affine), in_affine, acq, axis)
        if source is not None:
            seen1 = resample_boxed(as_boxed(source, np.uint8), in_affine, shape1, affine1, order=0)
        else:
            seen1 = resample(observed.astype(np.uint8), shape1, affine1, grid_affine, order=0)
        logits1 = self._logits(seen1 != 0, affine1, in_affine, acq, axis)
        return resample(logits1, tuple(observed.shape), grid_affine, affine1, order=1).astype(np.float32)

    def _logits(self, observed: np.ndarray, grid_affine, in_affine, acq: Acquisition, axis: int) -> np.ndarray:
        features = slab_features(observed, acq, in_affine, grid_affine, axis)
        param = next(self.model.parameters())
        x = torch.from_numpy(features).to(device=param.device, dtype=param.dtype)
        logits = self.model.logits(x).float().cpu().numpy()
        return np.ascontiguousarray(np.moveaxis(logits, 0, axis))
