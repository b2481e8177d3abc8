"""Index boxes of a grid and resampling limited to them.

A vertebra of a whole-spine or whole-body label map occupies a few percent of the volume; every
step of a reconstruction that only needs the structure reads and writes its box:
:func:`bounding_box` / :func:`grown_box` / :func:`union_box` find boxes, :func:`mapped_box` carries
one from a grid to another, :class:`BoxedVolume` holds a volume that is zero outside a box, and
:func:`resample_box` / :func:`resample_boxed` compute :func:`resample` only where the data reaches
(the same values as on the whole grid).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def bounding_box(mask: np.ndarray, margin=0) -> tuple[slice, ...] | None:
    """Index box of ``mask``'s nonzero voxels grown by ``margin`` voxels (one int, or one per axis),
    clipped to the array; None when the mask is empty."""
    mask = np.asarray(mask) != 0
    if not mask.any():
        return None
    box = []
    for d in range(mask.ndim):
        idx = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != d)))
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return grown_box(tuple(box), margin, mask.shape)


def grown_box(box: tuple[slice, ...], margin, shape) -> tuple[slice, ...]:
    """``box`` grown by ``margin`` voxels (one int, or one per axis) and clipped to ``shape``."""
    margins = np.broadcast_to(np.asarray(margin, dtype=int), (len(shape),))
    return tuple(slice(max(s.start - int(m), 0), min(s.stop + int(m), int(n))) for s, m, n in zip(box, margins, shape))


def union_box(*boxes: tuple[slice, ...] | None) -> tuple[slice, ...] | None:
    """The smallest index box holding every given box (None ones ignored; None if none is given)."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return tuple(slice(min(b[d].start for b in boxes), max(b[d].stop for b in boxes)) for d in range(len(boxes[0])))


def box_affine(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """The affine of ``array[box]`` given the affine of ``array``."""
    out = np.asarray(affine, dtype=np.float64).copy()
    out[:3, 3] = out[:3, :3] @ np.array([s.start or 0 for s in box], dtype=np.float64) + out[:3, 3]
    return out


def mapped_box(box: tuple[slice, ...], affine, out_shape, out_affine) -> tuple[slice, ...] | None:
    """The index box of the grid ``out_affine`` (clipped to ``out_shape``) that holds the index box ``box`` of
    the grid ``affine`` and half a voxel around it (SciPy's samplers in ``constant`` mode still read the edge
    voxel there), grown by one output voxel; None when they do not overlap."""
    corners = np.array(np.meshgrid(*[[s.start - 0.5, s.stop - 0.5] for s in box], indexing="ij")).reshape(3, -1)
    world = np.asarray(affine, float)[:3, :3] @ corners + np.asarray(affine, float)[:3, 3:4]
    inv = np.linalg.inv(np.asarray(out_affine, float))
    src = inv[:3, :3] @ world + inv[:3, 3:4]
    lo = np.clip(np.floor(src.min(1)).astype(int) - 1, 0, out_shape)
    hi = np.clip(np.ceil(src.max(1)).astype(int) + 2, 0, out_shape)
    if not np.all(hi > lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


@dataclass(frozen=True)
class BoxedVolume:
    """A volume of ``shape`` that is zero outside the index box ``box``; ``values`` is ``volume[box]``.

    How the output step hands one structure of a large grid around: a vertebra of a whole-body
    label map occupies a few percent of it.
    """

    shape: tuple[int, ...]
    box: tuple[slice, ...]
    values: np.ndarray

    @classmethod
    def around(cls, mask: np.ndarray, margin: int = 1) -> BoxedVolume:
        """``mask`` kept on its nonzero voxels' box grown by ``margin`` (an empty box for an empty mask)."""
        mask = np.asarray(mask)
        box = bounding_box(mask, margin) or tuple(slice(0, 0) for _ in mask.shape)
        return cls(tuple(mask.shape), box, mask[box])

    def full(self) -> np.ndarray:
        """The whole volume (a new array)."""
        out = np.zeros(self.shape, self.values.dtype)
        out[self.box] = self.values
        return out

    def at(self, index: list[np.ndarray]) -> np.ndarray:
        """``volume[index]`` for one integer index array per axis (broadcast against each other), without
        the whole volume: indices are clipped to the volume first (a point past its edge reads the edge
        voxel, as a clipped whole-grid read does), then points outside the box read zero."""
        local, inside = [], True
        for a, idx in enumerate(index):
            i = np.clip(idx, 0, self.shape[a] - 1) - self.box[a].start
            inside = inside & (i >= 0) & (i < self.values.shape[a])
            local.append(np.clip(i, 0, max(self.values.shape[a] - 1, 0)))
        return np.where(inside, self.values[tuple(local)], np.zeros((), self.values.dtype))

    def mask(self, level: float = 0.5) -> np.ndarray:
        """The whole volume's uint8 mask of values >= ``level`` (``level`` > 0: zero outside the box), without a
        whole-size copy of the values."""
        out = np.zeros(self.shape, np.uint8)
        out[self.box] = self.values >= level
        return out


def as_boxed(volume, dtype=None) -> BoxedVolume:
    """``volume`` as a :class:`BoxedVolume` (a whole array becomes one box over itself), values as ``dtype``."""
    if not isinstance(volume, BoxedVolume):
        volume = np.asarray(volume)
        volume = BoxedVolume(volume.shape, tuple(slice(0, n) for n in volume.shape), volume)
    return volume if dtype is None else BoxedVolume(volume.shape, volume.box, np.asarray(volume.values, dtype))


def resample_boxed(boxed: BoxedVolume, in_affine, out_shape, out_affine, order: int) -> np.ndarray:
    """:func:`resample` of ``boxed.full()`` (grid ``in_affine``), computed only where the box can reach."""
    out = np.zeros(tuple(out_shape), boxed.values.dtype)
    if boxed.values.size == 0:
        return out
    where = mapped_box(boxed.box, in_affine, out.shape, out_affine)
    if where is not None:
        shape = tuple(s.stop - s.start for s in where)
        out[where] = resample(boxed.values, shape, box_affine(out_affine, where), box_affine(in_affine, boxed.box),
                              order)
    return out


def resample_box(data: np.ndarray, out_shape, out_affine, in_affine, order: int,
                 box: tuple[slice, ...] | None = None) -> np.ndarray:
    """:func:`resample` computed only where ``data`` can reach: the output box that holds ``box`` of the input
    (default: all of it); 0 elsewhere, as :func:`resample` gives there."""
    data = np.asarray(data)
    box = tuple(slice(0, n) for n in data.shape) if box is None else box
    return resample_boxed(BoxedVolume(data.shape, box, data[box]), in_affine, out_shape, out_affine, order)


def resample(data: np.ndarray, out_shape, out_affine, in_affine, order: int) -> np.ndarray:
    """Sample ``data`` (grid ``in_affine``) on the grid ``out_affine`` of ``out_shape``.

    Spline interpolation of ``order``; 0 outside the input. Grids with parallel axes (a
    diagonal index map: the output grids of a reconstruction, SlabNet's 1 mm grid) take SciPy's
    zoom-and-shift path, the same samples 1.5-2.5 times faster than the general one.
    """
    matrix = np.linalg.inv(in_affine) @ out_affine
    linear = matrix[:3, :3]
    if np.all(np.abs(linear - np.diag(np.diag(linear))) <= 1e-9 * np.abs(linear).max()):
        linear, offset = np.diag(linear), matrix[:3, 3]
    else:
        linear, offset = matrix, 0.0
    # nearest neighbour: a voxel covers half a voxel around its centre, so the outer half voxel of the input's field
    # of view (which an isotropic output grid keeps) reads the edge voxel; SciPy's "constant" mode gives 0 there
    mode = "grid-constant" if order == 0 else "constant"
    return ndimage.affine_transform(
        data, linear, offset=offset, output_shape=tuple(out_shape), order=order, mode=mode, cval=0.0
    )
