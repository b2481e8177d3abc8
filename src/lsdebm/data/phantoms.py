"""Procedural lumbar vertebra phantoms (L1-L5) built from anatomical parts.

Each vertebra is the union of analytic solids evaluated on the grid in millimetres, so the
same subject looks the same at any spacing and grid size: a vertebral body (elliptic
cylinder with a kidney-shaped posterior wall, slightly concave endplates and a waist),
pedicles, laminae, a spinous process, transverse processes and superior/inferior articular
processes. Nominal sizes per level follow published lumbar morphometry (rounded):

* Panjabi M. M. et al. (1992). Human lumbar vertebrae: quantitative three-dimensional
  anatomy. Spine 17(3):299-306.
* Zhou S. H. et al. (2000). Geometrical dimensions of the lumbar vertebrae - analysis of
  data from digitised CT images. European Spine Journal 9(3):242-248.

The proportions start from these papers; the sizes are calibrated against the shipped real
masks (:mod:`lsdebm.realdata`, train split, 3 CT vertebrae per level; see
:mod:`lsdebm.data.anatomy` and ``docs/anatomy.md``): per level, the mean phantom volume
(seeds 0..9, 128³ at 1 mm) is within 10 % of the real mean and the mean world extents
(left-right, antero-posterior, supero-inferior) within 5 mm. Segmentation masks include the
cortical shell and the full articular processes, so they are fuller than the dry-bone
averages of the papers: body width ~44 mm (L1) -> ~54 mm (L5), depth ~35-39 mm, height
~27-29.5 mm, pedicle width ~10 -> ~19 mm, pedicle height ~15-16.5 mm, canal ~22-27 mm wide
and ~17 mm deep, transverse span ~77-94 mm (longest at L3), laminae 7.5-9 mm thick,
spinous process ~22-31 mm long and 8.5-10.5 mm thick, articular processes ~11-12.5 mm thick
reaching ~14-16.5 mm beyond the endplates.

Coordinates: array axes are (Z, Y, X) = (cranio-caudal, antero-posterior, left-right).
Physical ``z`` grows superiorly, ``y`` grows posteriorly (the body is at negative ``y``),
``x`` is left-right. The affine (see :func:`grid_affine`) maps array indices to RAS+ world
millimetres with the volume centred at the origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lsdebm.data.validate import is_number, range_checked, seed_ok
from lsdebm.errors import InputError
from lsdebm.limits import array_bytes, check_memory

PART_LABELS = {1: "body", 2: "pedicles", 3: "laminae", 4: "spinous", 5: "transverse", 6: "articular"}
LEVELS = ("L1", "L2", "L3", "L4", "L5")
#: The voxel sizes (mm) :func:`make_vertebra` takes: finer grids would need billions of voxels to cover a vertebra,
#: and at coarser ones it is smaller than a voxel.
PHANTOM_SPACING_MM = (0.01, 100.0)
#: The largest grid :func:`make_vertebra` takes per axis (the memory limit refuses far smaller ones first).
PHANTOM_MAX_SIZE = 10**6

# Nominal dimensions in mm per level (L1..L5): proportions from Panjabi 1992 / Zhou 2000, sizes
# calibrated against the shipped real masks, train split (tests/test_phantom_calibration.py).
MORPHOMETRY = {
    "body_width": (44.0, 46.0, 50.5, 53.0, 54.0),
    "body_depth": (35.0, 36.5, 38.0, 39.0, 38.5),
    "body_height": (28.5, 29.5, 29.0, 27.0, 28.5),
    "pedicle_width": (10.0, 11.0, 14.0, 16.0, 19.0),
    "pedicle_height": (16.5, 16.0, 16.0, 15.5, 15.0),
    "canal_width": (22.0, 23.0, 24.0, 25.0, 27.0),
    "canal_depth": (17.0, 17.0, 17.0, 17.0, 18.0),
    "transverse_span": (77.0, 84.0, 93.0, 84.0, 94.0),
    "transverse_thickness": (7.0, 7.5, 8.0, 8.5, 9.0),
    "transverse_height": (12.0, 13.0, 14.0, 14.0, 15.0),
    "lamina_thickness": (7.5, 8.0, 8.0, 8.5, 9.0),
    "lamina_height": (25.0, 26.0, 26.0, 25.0, 24.0),
    "spinous_length": (25.0, 28.0, 31.0, 31.0, 22.0),
    "spinous_thickness": (8.5, 9.0, 9.5, 10.0, 10.5),
    "spinous_height": (24.0, 26.0, 27.0, 26.0, 23.0),
    "articular_length": (16.0, 16.0, 14.0, 13.5, 16.5),
    "articular_thickness": (11.0, 11.0, 11.5, 12.0, 12.5),
}


@dataclass(frozen=True)
class Phantom:
    """One procedural vertebra on a voxel grid.

    Attributes:
        mask: Binary mask, uint8 {0, 1}, shape (Z, Y, X).
        parts: Part labels (see ``PART_LABELS``), uint8, 0 = background.
        affine: 4x4 float64 voxel-to-RAS-millimetre map (:func:`grid_affine`), centred at the origin.
        level: "L1" .. "L5".
        params: Subject parameters (dimensions in mm, pose in degrees/mm, seed).
    """

    mask: np.ndarray
    parts: np.ndarray
    affine: np.ndarray
    level: str
    params: dict = field(default_factory=dict)


def grid_affine(size: int, spacing: float, center=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Affine of the model frame: a ``size``³ grid at ``spacing`` mm centred at ``center``.

    The model frame's array axes (Z, Y, X) point superior, posterior and right in RAS+
    world coordinates, so axis 0 maps to world +z, axis 1 to world -y, axis 2 to world +x.
    Phantoms use it, and :func:`lsdebm.data.frame.crop_label` resamples real files into it,
    so both reach the model in the same orientation.
    """
    affine = np.zeros((4, 4))
    affine[:3, :3] = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]) * spacing
    affine[3, 3] = 1.0
    middle = np.full(3, (size - 1) / 2.0)
    affine[:3, 3] = np.asarray(center, float) - affine[:3, :3] @ middle
    return affine


def subject_params(level: str, seed: int) -> dict:
    """Draw the dimensions and pose of one subject's vertebra at ``level``.

    Variation: a global scale (~3 % std), per-dimension jitter (~5 % std), rotations of a
    few degrees about each axis and offsets of a few millimetres. Deterministic in
    ``(level, seed)``.

    Raises:
        InputError: If ``level`` is not one of L1..L5, or ``seed`` is not a whole number in [0, 2**63).
    """
    if not (isinstance(level, str) and level in LEVELS):
        raise InputError(f"unknown vertebra level {level!r:.60}; allowed: {', '.join(LEVELS)}")
    if not seed_ok(seed):  # numpy's seed sequence refuses negative numbers; None or a string failed in int()
        raise InputError(f"seed={seed!r:.60}: expected a whole number >= 0 and < 2**63")
    index = LEVELS.index(level)
    rng = np.random.default_rng([int(seed), index])
    scale = float(np.clip(rng.normal(1.0, 0.03), 0.92, 1.08))
    params = {
        name: float(values[index] * scale * np.clip(rng.normal(1.0, 0.05), 0.88, 1.12))
        for name, values in MORPHOMETRY.items()
    }
    params["waist"] = float(rng.uniform(0.04, 0.09))
    params["endplate_concavity"] = float(rng.uniform(0.8, 1.8))
    params["spinous_tilt_deg"] = float(rng.uniform(10.0, 25.0))
    params["rotation_deg"] = [float(v) for v in np.clip(rng.normal(0.0, 2.5, 3), -6.0, 6.0)]
    params["offset_mm"] = [float(v) for v in np.clip(rng.normal(0.0, 1.5, 3), -4.0, 4.0)]
    params["scale"] = scale
    params["seed"] = int(seed)
    params["level"] = level
    return params


def _rotation(degrees) -> np.ndarray:
    """Rotation matrix acting on (z, y, x) vectors from angles about the z, y, x axes."""
    az, ay, ax = np.deg2rad(degrees)
    rz = np.array([[1, 0, 0], [0, np.cos(az), -np.sin(az)], [0, np.sin(az), np.cos(az)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rx = np.array([[np.cos(ax), -np.sin(ax), 0], [np.sin(ax), np.cos(ax), 0], [0, 0, 1]])
    return rz @ ry @ rx


class _Canvas:
    """Grid coordinates in the vertebra's local frame, with per-part bounding boxes."""

    def __init__(self, size: int, spacing: float, rotation: np.ndarray, offset: np.ndarray):
        self.size, self.spacing = size, spacing
        self.rotation, self.offset = rotation, offset
        self.parts = np.zeros((size,) * 3, dtype=np.uint8)
        self.origin = -(size - 1) / 2.0 * spacing

    def _box(self, lo: np.ndarray, hi: np.ndarray):
        """Voxel slices covering a local-frame box after rotation and offset."""
        corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1)
        world = self.rotation @ corners + self.offset[:, None]
        first = np.floor((world.min(1) - self.origin) / self.spacing).astype(int) - 1
        last = np.ceil((world.max(1) - self.origin) / self.spacing).astype(int) + 2
        first, last = np.clip(first, 0, self.size), np.clip(last, 0, self.size)
        return tuple(slice(a, b) for a, b in zip(first, last))

    def local_coords(self, box):
        """Local-frame (z, y, x) coordinates in mm of the voxels inside ``box``."""
        axes = [
            (np.arange(s.start, s.stop, dtype=np.float32) * self.spacing + self.origin)
            for s in box
        ]
        world = np.meshgrid(*axes, indexing="ij", sparse=True)
        world = [w - o for w, o in zip(world, self.offset.astype(np.float32))]
        inv = self.rotation.T.astype(np.float32)
        return [inv[i, 0] * world[0] + inv[i, 1] * world[1] + inv[i, 2] * world[2] for i in range(3)]

    def paint(self, label: int, inside_fn, lo, hi) -> None:
        """Label voxels where ``inside_fn(z, y, x)`` holds, inside local box [lo, hi]."""
        box = self._box(np.asarray(lo, float), np.asarray(hi, float))
        if any(s.stop <= s.start for s in box):
            return
        inside = inside_fn(*self.local_coords(box))
        target = self.parts[box]
        target[inside & (target == 0)] = label


def _tube(p0, p1, r0, r1, up=(1.0, 0.0, 0.0)):
    """Tapered tube with elliptic cross-section and rounded ends from ``p0`` to ``p1``.

    Args:
        p0, p1: End points (z, y, x) in mm.
        r0, r1: Semi-axes (along ``up``, across) at ``p0`` and at ``p1``.
        up: Direction of the first semi-axis (projected perpendicular to the tube).

    Returns:
        ``(inside_fn, lo, hi)`` for :meth:`_Canvas.paint`.
    """
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    axis /= length
    u = np.asarray(up, float) - np.dot(up, axis) * axis
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    r0, r1 = np.asarray(r0, float), np.asarray(r1, float)

    def inside(z, y, x):
        dz, dy, dx = z - p0[0], y - p0[1], x - p0[2]
        t = dz * axis[0] + dy * axis[1] + dx * axis[2]
        frac = np.clip(t / length, 0.0, 1.0)
        a = r0[0] + (r1[0] - r0[0]) * frac
        b = r0[1] + (r1[1] - r0[1]) * frac
        pu = dz * u[0] + dy * u[1] + dx * u[2]
        pv = dz * v[0] + dy * v[1] + dx * v[2]
        beyond = np.maximum(-t, t - length) / np.minimum(a, b)
        return (pu / a) ** 2 + (pv / b) ** 2 + np.maximum(beyond, 0.0) ** 2 <= 1.0

    pad = float(max(r0.max(), r1.max()))
    lo = np.minimum(p0, p1) - pad
    hi = np.maximum(p0, p1) + pad
    return inside, lo, hi


def _body(center_y: float, width: float, depth: float, height: float, waist: float, concavity: float):
    """Vertebral body: elliptic cylinder, kidney-shaped back, waist, concave endplates."""
    a, b, half_h = width / 2.0, depth / 2.0, height / 2.0
    notch_y, notch_a, notch_b = center_y + b + 0.18 * depth, 0.32 * width, 0.3 * depth

    def inside(z, y, x):
        zn = z / half_h
        shrink = 1.0 - waist * (1.0 - zn**2)
        r2 = ((x / a) ** 2 + ((y - center_y) / b) ** 2) / shrink**2
        endplate = half_h - concavity * np.maximum(1.0 - r2, 0.0)
        notch = (x / notch_a) ** 2 + ((y - notch_y) / notch_b) ** 2 < 1.0
        return (r2 <= 1.0) & (np.abs(z) <= endplate) & ~notch

    return inside, (-half_h, center_y - b, -a), (half_h, center_y + b, a)


def _paint_vertebra(canvas: _Canvas, p: dict) -> None:
    """Paint all parts of one vertebra described by ``p`` (see :func:`subject_params`)."""
    depth, height = p["body_depth"], p["body_height"]
    ap_extent = depth + p["canal_depth"] + p["lamina_thickness"] + 0.9 * p["spinous_length"]
    body_y = -ap_extent / 2.0 + depth / 2.0
    wall_y = body_y + depth / 2.0  # posterior wall of the body
    canal_back = wall_y + p["canal_depth"]  # anterior surface of the laminae at midline
    ped_x = p["canal_width"] / 2.0 + p["pedicle_width"] / 2.0
    ped_z = 0.18 * height
    ped_end = wall_y + 0.55 * p["canal_depth"]
    lam_t, lam_h = p["lamina_thickness"], p["lamina_height"]

    canvas.paint(1, *_body(body_y, p["body_width"], depth, height, p["waist"], p["endplate_concavity"]))
    for side in (-1.0, 1.0):
        ped = (p["pedicle_height"] / 2.0, p["pedicle_width"] / 2.0)
        canvas.paint(2, *_tube((ped_z, wall_y - 4.0, side * ped_x), (ped_z, ped_end, side * ped_x), ped, ped))
    for side in (-1.0, 1.0):
        lam = (lam_h / 2.0, lam_t / 2.0)
        start = (ped_z - 2.0, ped_end, side * ped_x)
        end = (ped_z - 5.0, canal_back + lam_t / 2.0, 0.0)
        canvas.paint(3, *_tube(start, end, lam, lam))
    tilt = np.deg2rad(p["spinous_tilt_deg"])
    sp_len, sp_half_t = p["spinous_length"], p["spinous_thickness"] / 2.0
    sp_start = np.array([ped_z - 5.0, canal_back + lam_t / 2.0, 0.0])
    sp_end = sp_start + sp_len * np.array([-np.sin(tilt), np.cos(tilt), 0.0])
    canvas.paint(4, *_tube(sp_start, sp_end, (p["spinous_height"] / 2.0, sp_half_t),
                           (0.35 * p["spinous_height"], sp_half_t)))
    tp_t, tp_h = p["transverse_thickness"] / 2.0, p["transverse_height"] / 2.0
    for side in (-1.0, 1.0):
        root = (ped_z, ped_end - 1.0, side * (ped_x - 1.0))
        tip = (ped_z + 2.0, ped_end + 5.0, side * p["transverse_span"] / 2.0)
        canvas.paint(5, *_tube(root, tip, (tp_h, tp_t), (0.7 * tp_h, 0.8 * tp_t)))
    art_len, art_r = p["articular_length"], p["articular_thickness"] / 2.0
    for side in (-1.0, 1.0):
        sup0 = (ped_z + 2.0, ped_end + 1.0, side * (ped_x + 1.0))
        sup1 = (height / 2.0 + art_len * 0.8, ped_end + 4.0, side * (ped_x + 3.0))
        canvas.paint(6, *_tube(sup0, sup1, (art_r, 0.8 * art_r), (0.8 * art_r, 0.6 * art_r), up=(0.0, 1.0, 0.0)))
        inf0 = (ped_z - 8.0, canal_back - 1.0, side * (ped_x - 4.0))
        inf1 = (-height / 2.0 - art_len * 0.6, canal_back + 2.0, side * (ped_x - 3.0))
        canvas.paint(6, *_tube(inf0, inf1, (art_r, 0.8 * art_r), (0.8 * art_r, 0.6 * art_r), up=(0.0, 1.0, 0.0)))


def make_vertebra(level: str, seed: int, size: int = 64, spacing: float = 2.0) -> Phantom:
    """Generate one lumbar vertebra phantom.

    Args:
        level: "L1" .. "L5".
        seed: Subject seed; the same ``(level, seed)`` gives the same anatomy at any grid.
        size: Grid size per axis (cubic grid).
        spacing: Isotropic voxel spacing in mm. The default 64³ at 2 mm and 128³ at 1 mm
            cover the same 128 mm field of view.

    Returns:
        A :class:`Phantom` with mask, part labels, affine, level and subject parameters.

    Raises:
        InputError: For an unknown level, a seed that is no whole number in [0, 2**63), a size that is no whole
            number in [8, :data:`PHANTOM_MAX_SIZE`], a spacing that is no number in :data:`PHANTOM_SPACING_MM`,
            a grid too large for the memory limit, or one on which no voxel lies inside the vertebra.
    """
    if not (is_number(size) and float(size).is_integer() and 8 <= size <= PHANTOM_MAX_SIZE):
        raise InputError(f"make_vertebra.size={size!r:.60}: expected one whole number in [8, {PHANTOM_MAX_SIZE}] "
                         "(voxels per axis of the cubic grid)")
    size = int(size)
    spacing = range_checked("make_vertebra", "spacing", spacing, *PHANTOM_SPACING_MM, " of mm")
    # world coordinates (3 x float64) plus the label volume are alive at once
    check_memory(array_bytes((size,) * 3, 3 * 8 + 1), f"a {size}^3 phantom")
    params = subject_params(level, seed)
    canvas = _Canvas(size, spacing, _rotation(params["rotation_deg"]), np.array(params["offset_mm"]))
    _paint_vertebra(canvas, params)
    parts = canvas.parts
    if not parts.any():
        raise InputError(f"no voxel of the {size}^3 grid at {spacing:g} mm lies inside the vertebra; expected "
                         "a grid that resolves it (about 50 mm across: e.g. 64 voxels at 2 mm)")
    return Phantom(
        mask=(parts > 0).astype(np.uint8),
        parts=parts,
        affine=grid_affine(size, spacing),
        level=level,
        params=params,
    )
