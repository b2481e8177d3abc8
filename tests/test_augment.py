"""World-space augmentation of real masks (lsdebm.data.augment)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from lsdebm.data.augment import AugmentRanges, random_warp, rotation_matrix
from lsdebm.data.real import isotropic, load_real_masks
from lsdebm.errors import InputError

torch.set_num_threads(1)

ROTATE = AugmentRanges(rotation_deg=20.0, scale=0.0, elastic_mm=0.0, flip=0.0)
SCALE = AugmentRanges(rotation_deg=0.0, scale=0.1, elastic_mm=0.0, flip=0.0)
FLIP = AugmentRanges(rotation_deg=0.0, scale=0.0, elastic_mm=0.0, flip=1.0)


@pytest.fixture(scope="module")
def real():
    """A real L3 on a padded isotropic 1 mm grid (as the training bank uses it)."""
    m = [m for m in load_real_masks(split="val", levels=("L3",)) if m.name == "L3_tptboxct"][0]
    return isotropic(m.mask, m.affine, 1.0, 15.0)


def _world(mask, affine):
    v = np.argwhere(mask).astype(np.float64)
    return v @ affine[:3, :3].T + affine[:3, 3]


def _moments(mask, affine):
    w = _world(mask, affine)
    return w.mean(0), np.cov(w.T)


def _dice(a, b):
    a, b = a > 0, b > 0
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _drawn(seed, ranges):
    """The rotation, scale and flip random_warp draws from default_rng(seed) (same order)."""
    rng = np.random.default_rng(seed)
    angles = rng.uniform(-ranges.rotation_deg, ranges.rotation_deg, 3)
    scale = rng.uniform(1 - ranges.scale, 1 + ranges.scale)
    flip = rng.random() < ranges.flip
    return angles, scale, flip


@pytest.mark.parametrize("seed", [0, 1])
def test_rotation_keeps_volume_and_rotates_the_principal_axes(real, seed):
    mask, affine = real
    out = random_warp(mask, affine, np.random.default_rng(seed), ROTATE)
    assert out.shape == mask.shape and out.dtype == np.uint8 and set(np.unique(out)) <= {0, 1}
    assert abs(out.sum() / mask.sum() - 1) < 0.03
    angles, _, _ = _drawn(seed, ROTATE)
    assert np.abs(angles).max() > 5  # a real rotation was drawn
    rot = rotation_matrix(angles)
    c0, cov0 = _moments(mask, affine)
    c1, cov1 = _moments(out, affine)
    assert np.linalg.norm(c1 - c0) < 0.5  # about the centroid
    expected = rot @ cov0 @ rot.T
    err = np.linalg.norm(cov1 - expected) / np.linalg.norm(expected)
    assert err < 0.03
    # the unrotated and the inversely rotated covariances are clearly worse
    assert np.linalg.norm(cov1 - cov0) / np.linalg.norm(cov0) > 3 * err
    assert np.linalg.norm(cov1 - rot.T @ cov0 @ rot) / np.linalg.norm(cov0) > 3 * err
    # principal axes: each rotated original axis matches a new one
    e0 = np.linalg.eigh(cov0)[1]
    e1 = np.linalg.eigh(cov1)[1]
    cos = np.abs(np.sum((rot @ e0) * e1, axis=0))
    assert np.all(cos > 0.98), cos


def test_rotation_matrix_axes_and_order():
    np.testing.assert_allclose(rotation_matrix([0, 0, 90]) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(rotation_matrix([90, 0, 0]) @ [0, 1, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(rotation_matrix([0, 90, 0]) @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    r = rotation_matrix([10, -20, 30])
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    expected = rotation_matrix([0, 0, 30]) @ rotation_matrix([0, -20, 0]) @ rotation_matrix([10, 0, 0])
    np.testing.assert_allclose(r, expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_scale_changes_volume_by_the_cube_of_the_drawn_scale(real, seed):
    mask, affine = real
    out = random_warp(mask, affine, np.random.default_rng(seed), SCALE)
    _, scale, _ = _drawn(seed, SCALE)
    assert abs(scale - 1) > 0.02
    ratio = out.sum() / mask.sum()
    assert 0.9 ** 3 * 0.95 <= ratio <= 1.1 ** 3 * 1.05
    assert ratio == pytest.approx(scale ** 3, rel=0.05)
    c0, cov0 = _moments(mask, affine)
    c1, cov1 = _moments(out, affine)
    assert np.linalg.norm(c1 - c0) < 0.5
    np.testing.assert_allclose(np.trace(cov1) / np.trace(cov0), scale ** 2, rtol=0.05)


def test_flip_mirrors_left_right_about_the_centroid(real):
    mask, affine = real
    out = random_warp(mask, affine, np.random.default_rng(0), FLIP)
    c = _world(mask, affine).mean(0)
    mirror = np.eye(4)
    mirror[0, 0], mirror[0, 3] = -1.0, 2 * c[0]  # world x -> 2 c_x - x
    matrix = np.linalg.inv(affine) @ mirror @ affine
    expected = ndimage.affine_transform(mask.astype(np.float32), matrix, order=1) >= 0.5
    assert _dice(out, expected) > 0.95
    assert _dice(out, mask) < _dice(out, expected) - 0.02  # the vertebra is not symmetric to the voxel
    # world y / z mirrors are not what happened
    for k in (1, 2):
        other = np.eye(4)
        other[k, k], other[k, 3] = -1.0, 2 * c[k]
        wrong = ndimage.affine_transform(mask.astype(np.float32), np.linalg.inv(affine) @ other @ affine,
                                         order=1) >= 0.5
        assert _dice(out, wrong) < 0.9


def test_flip_zero_and_nothing_else_is_the_identity(real):
    mask, affine = real
    none = AugmentRanges(rotation_deg=0.0, scale=0.0, elastic_mm=0.0, flip=0.0)
    out = random_warp(mask, affine, np.random.default_rng(0), none)
    assert _dice(out, mask) > 0.995


def test_elastic_warp_is_smooth_and_mild(real):
    mask, affine = real
    ranges = AugmentRanges(rotation_deg=0.0, scale=0.0, elastic_mm=1.5, elastic_smoothness_mm=10.0, flip=0.0)
    out = random_warp(mask, affine, np.random.default_rng(4), ranges)
    d = _dice(out, mask)
    assert 0.7 < d < 0.99
    assert abs(out.sum() / mask.sum() - 1) < 0.15
    # a smooth warp keeps the structure in one piece (no speckle)
    _, n = ndimage.label(out)
    assert n <= 2


def test_same_seed_same_output_and_other_seed_differs(real):
    mask, affine = real
    ranges = AugmentRanges()  # everything on
    a = random_warp(mask, affine, np.random.default_rng(11), ranges)
    b = random_warp(mask, affine, np.random.default_rng(11), ranges)
    c = random_warp(mask, affine, np.random.default_rng(12), ranges)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bad_inputs_are_input_errors(real):
    mask, affine = real
    rng = np.random.default_rng(0)
    aniso = affine.copy()
    aniso[:3, 2] *= 3.0
    with pytest.raises(InputError, match="isotropic"):
        random_warp(mask, aniso, rng, ROTATE)
    with pytest.raises(InputError, match="non-empty"):
        random_warp(np.zeros_like(mask), affine, rng, ROTATE)
    with pytest.raises(InputError, match="3D"):
        random_warp(mask[0], affine, rng, ROTATE)


@pytest.mark.parametrize("field,value", [("rotation_deg", -1.0), ("rotation_deg", 181.0), ("scale", 0.6),
                                         ("scale", -0.1), ("elastic_mm", 11.0), ("elastic_smoothness_mm", 0.5),
                                         ("flip", 1.5), ("flip", -0.1)])
def test_augment_ranges_validation(field, value):
    with pytest.raises(InputError, match=f"AugmentRanges.{field}={value}: expected a number"):
        AugmentRanges(**{field: value})


@pytest.mark.parametrize("field, value, expected", [
    ("rotation_deg", "15", "AugmentRanges.rotation_deg='15': expected a number of degrees in [0.0, 180.0]"),
    ("scale", None, "AugmentRanges.scale=None: expected a number in [0.0, 0.5]"),
    ("elastic_mm", [1.0, 2.0], "AugmentRanges.elastic_mm=[1.0, 2.0]: expected a number of mm in [0.0, 10.0]"),
    ("elastic_smoothness_mm", float("nan"),
     "AugmentRanges.elastic_smoothness_mm=nan: expected a number of mm in [1.0, 50.0]"),
    ("flip", True, "AugmentRanges.flip=True: expected a number (a probability) in [0.0, 1.0]"),
    ("flip", np.array([0.5]), "AugmentRanges.flip=array([0.5]): expected a number (a probability) in [0.0, 1.0]"),
])
def test_wrong_typed_fields_are_one_input_error_naming_them(field, value, expected):
    """A string, None, a list, NaN or a bool was a bare TypeError (or a misleading range message) from the check."""
    with pytest.raises(InputError) as info:
        AugmentRanges(**{field: value})
    assert str(info.value) == expected


def test_numpy_numbers_are_taken_as_floats():
    ranges = AugmentRanges(rotation_deg=np.int64(20), scale=np.float32(0.25))
    assert ranges == AugmentRanges(rotation_deg=20.0, scale=0.25)
    assert type(ranges.rotation_deg) is float and type(ranges.scale) is float


def test_augment_ranges_bounds_are_accepted():
    AugmentRanges(rotation_deg=180.0, scale=0.5, elastic_mm=0.0, elastic_smoothness_mm=50.0, flip=0.0)
    AugmentRanges(rotation_deg=0.0, scale=0.0, elastic_mm=10.0, elastic_smoothness_mm=1.0, flip=1.0)
