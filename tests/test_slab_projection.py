"""Projection of output probabilities onto the observed slabs (lsdebm.data.slab_projection)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lsdebm.data.acquisition import Acquisition
from lsdebm.data.grids import isotropic_grid
from lsdebm.data.slab_projection import aligned_axis, consistent_probabilities, project_to_slabs, slab_ids

SLAB = 3  # output slices per slab
AXIS = 1


def _case(seed=0, shape=(10, 5 * SLAB, 9)):
    """Smooth random probabilities, slab ids (SLAB slices each along AXIS) and a staircase observation."""
    rng = np.random.default_rng(seed)
    logits = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    probs = (1 / (1 + np.exp(-logits / logits.std() * 2.5))).astype(np.float32)
    n_slabs = shape[AXIS] // SLAB
    ids = np.repeat(np.arange(n_slabs), SLAB)
    per_slab = rng.random((shape[0], n_slabs, shape[2])) < 0.5
    observed = np.repeat(per_slab, SLAB, axis=AXIS).astype(np.uint8)
    return probs, observed, ids


def _column_means(arr, ids):
    """(n_slabs, ...) means over each slab's slices along AXIS."""
    a = np.moveaxis(arr, AXIS, 0)
    return np.stack([a[ids == s].mean(0) for s in np.unique(ids)])


def test_full_projection_makes_every_slab_column_agree_with_the_observation():
    probs, observed, ids = _case()
    seen = _column_means(observed.astype(float), ids) >= 0.5
    before = _column_means(probs, ids)
    assert ((before >= 0.5) != seen).mean() > 0.2  # the case has plenty of disagreeing columns
    out = project_to_slabs(probs, observed, ids, AXIS, weight=1.0, margin=0.02)
    assert out.shape == probs.shape and out.dtype == np.float32
    assert np.all((out >= 0) & (out <= 1))
    after = _column_means(out, ids)
    assert np.all(after[seen] >= 0.5) and np.all(after[~seen] < 0.5)
    # corrected columns end at 0.5 +- margin, not beyond
    fixed = np.where(seen, before < 0.52, before > 0.48)
    assert fixed.mean() > 0.2
    np.testing.assert_allclose(after[fixed], np.where(seen, 0.52, 0.48)[fixed], atol=1e-4)


def test_a_column_moves_by_one_common_logit_shift_in_the_observed_direction():
    probs, observed, ids = _case(seed=1)
    out = project_to_slabs(probs, observed, ids, AXIS)
    logit = lambda p: np.log(np.clip(p, 1e-6, 1 - 1e-6)) - np.log1p(-np.clip(p, 1e-6, 1 - 1e-6))  # noqa: E731
    delta = np.moveaxis(logit(out.astype(np.float64)) - logit(probs.astype(np.float64)), AXIS, 0)
    seen = np.moveaxis(observed, AXIS, 0) > 0
    for s in np.unique(ids):
        d = delta[ids == s]
        spread = d.max(0) - d.min(0)
        assert spread.max() < 1e-3  # the slab's slices shift together (the in-slab shape is the model's)
        assert np.all(d[0][seen[ids == s][0]] >= -1e-6)  # observed foreground: only raised
        assert np.all(d[0][~seen[ids == s][0]] <= 1e-6)  # observed background: only lowered


def test_consistent_columns_are_not_touched_at_all():
    probs, observed, ids = _case(seed=2)
    out = project_to_slabs(probs, observed, ids, AXIS, margin=0.02)
    before = _column_means(probs, ids)
    seen = _column_means(observed.astype(float), ids) >= 0.5
    ok = np.where(seen, before >= 0.52, before <= 0.48)
    assert ok.any() and (~ok).any()
    p = np.moveaxis(probs, AXIS, 0)
    o = np.moveaxis(out, AXIS, 0)
    for k, s in enumerate(np.unique(ids)):
        np.testing.assert_array_equal(o[ids == s][:, ok[k]], p[ids == s][:, ok[k]])
        assert np.all(np.any(o[ids == s][:, ~ok[k]] != p[ids == s][:, ~ok[k]], axis=0))


def test_weight_zero_returns_the_input_and_partial_weight_goes_part_way():
    probs, observed, ids = _case(seed=3)
    assert project_to_slabs(probs, observed, ids, AXIS, weight=0.0) is probs
    seen = _column_means(observed.astype(float), ids) >= 0.5
    before = _column_means(probs, ids)
    half = _column_means(project_to_slabs(probs, observed, ids, AXIS, weight=0.5), ids)
    full = _column_means(project_to_slabs(probs, observed, ids, AXIS, weight=1.0), ids)
    moved = np.abs(full - before) > 1e-3
    assert moved.any()
    # half the logit shift: strictly between the input and the full projection
    lo, hi = np.minimum(before, full), np.maximum(before, full)
    assert np.all((half[moved] > lo[moved]) & (half[moved] < hi[moved]))
    assert np.any((half >= 0.5) != seen)  # not every column is fixed at half weight


def test_aligned_axis_for_permuted_and_flipped_grids():
    in_aff = np.diag([1.0, 1.0, 4.0, 1.0])
    out_aff = np.eye(4)
    # out axis 0 = -y, out axis 1 = z, out axis 2 = x; spacings differ from the input's
    out_aff[:3, :3] = np.array([[0, 0, 0.5], [-0.5, 0, 0], [0, 2.0, 0]])
    assert [aligned_axis(in_aff, out_aff, a) for a in range(3)] == [2, 0, 1]
    assert [aligned_axis(in_aff, in_aff, a) for a in range(3)] == [0, 1, 2]
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    rotated = np.eye(4)
    rotated[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    assert aligned_axis(in_aff, rotated, 2) is None  # only one axis parallel: not aligned
    assert aligned_axis(in_aff, rotated, 0) is None


def test_slab_ids_on_the_isotropic_grid_of_a_thick_slice_input():
    in_shape, in_aff = (6, 7, 5), np.diag([1.0, 1.0, 4.0, 1.0])
    in_aff[:3, 3] = [3.0, -2.0, 10.0]
    out_shape, out_aff = isotropic_grid(in_shape, in_aff, 1.0)
    assert out_shape == (6, 7, 20)
    acq = Acquisition(2, 4.0, 0.0, "spacing")
    ids = slab_ids(acq, in_aff, out_shape, out_aff, 2)
    np.testing.assert_array_equal(ids, np.repeat(np.arange(5), 4))
    # an offset of 2 mm moves the boundaries by two output slices
    ids = slab_ids(Acquisition(2, 4.0, 2.0, "options"), in_aff, out_shape, out_aff, 2)
    np.testing.assert_array_equal(ids, np.floor((np.arange(20) + 0.5 - 2.0) / 4.0).astype(int))
    # a flipped output axis numbers the same slabs in reverse
    flipped = out_aff.copy()
    flipped[:3, 2] *= -1
    flipped[:3, 3] = out_aff[:3, :3] @ [0, 0, 19] + out_aff[:3, 3]
    np.testing.assert_array_equal(slab_ids(acq, in_aff, out_shape, flipped, 2), np.repeat(np.arange(5), 4)[::-1])


def _thick_input():
    """A 1 x 1 x 4 mm input mask (a block) and its isotropic 1 mm output grid with noisy probabilities."""
    in_aff = np.diag([1.0, 1.0, 4.0, 1.0])
    src = np.zeros((16, 16, 8), np.uint8)
    src[4:12, 3:13, 2:6] = 1
    out_shape, out_aff = isotropic_grid(src.shape, in_aff, 1.0)
    rng = np.random.default_rng(5)
    truth = np.zeros(out_shape)
    truth[4:12, 3:13, 9:23] = 1  # the model disagrees at the slab ends
    probs = np.clip(ndimage.gaussian_filter(truth, 1.0) + 0.1 * rng.standard_normal(out_shape), 0, 1)
    return src, in_aff, out_shape, out_aff, probs.astype(np.float32)


def test_consistent_probabilities_projects_on_a_parallel_grid():
    src, in_aff, out_shape, out_aff, probs = _thick_input()
    acq = Acquisition(2, 4.0, 0.0, "spacing")
    out, note = consistent_probabilities(probs, src, in_aff, acq, out_shape, out_aff)
    assert note.startswith("projected onto") and "4.00 mm" in note
    ids = slab_ids(acq, in_aff, out_shape, out_aff, 2)
    observed = np.repeat(src, 4, axis=2)
    for s in np.unique(ids):
        mean = out[..., ids == s].mean(-1)
        seen = observed[..., ids == s].mean(-1) >= 0.5
        assert np.all(mean[seen] >= 0.5) and np.all(mean[~seen] < 0.5)
    assert not np.array_equal(out, probs)


def test_consistent_probabilities_skips_rotated_grids_and_unknown_acquisitions():
    src, in_aff, out_shape, out_aff, probs = _thick_input()
    acq = Acquisition(2, 4.0, 0.0, "spacing")
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    rot = np.eye(4)
    rot[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ out_aff[:3, :3]
    rot[:3, 3] = out_aff[:3, 3]
    out, note = consistent_probabilities(probs, src, in_aff, acq, out_shape, rot)
    assert out is probs and "not parallel" in note
    out, note = consistent_probabilities(probs, src, in_aff, None, out_shape, out_aff)
    assert out is probs and note == "no acquisition known"
    out, note = consistent_probabilities(probs, src, in_aff, acq, out_shape, out_aff, weight=0.0)
    assert out is probs and note == "off"


@pytest.mark.parametrize("axis", [0, 2])
def test_projection_follows_the_given_axis(axis):
    rng = np.random.default_rng(7)
    shape = [6, 6, 6]
    shape[axis] = 8
    probs = rng.random(shape).astype(np.float32)
    ids = np.repeat(np.arange(4), 2)
    obs = np.repeat(rng.random([s if i != axis else 4 for i, s in enumerate(shape)]) < 0.5, 2, axis=axis)
    out = project_to_slabs(probs, obs, ids, axis)
    m = np.moveaxis(out, axis, 0).reshape(4, 2, -1).mean(1)
    y = np.moveaxis(obs, axis, 0).reshape(4, 2, -1)[:, 0]
    assert np.all(m[y] >= 0.5) and np.all(m[~y] < 0.5)


def test_shape_interpolation_fills_between_slab_centres():
    """A sphere seen as 4 mm slabs: the interpolation is closer to the sphere than the staircase."""
    from lsdebm.data.slab_projection import interpolate_slabs

    grid = np.indices((40, 40, 40)).astype(float)
    sphere = np.linalg.norm(grid - 19.5, axis=0) < 14
    ids = np.arange(40) // 4
    stair = sphere.copy()
    for s in range(10):  # each slab shows its central slice, as a nearest-neighbour resampling does
        stair[4 * s:4 * s + 4] = sphere[4 * s + 2]
    shape = interpolate_slabs(stair, ids, 0, (1.0, 1.0, 1.0))
    from lsdebm.evaluation.metrics import dice
    assert dice(shape >= 0.5, sphere) > dice(stair, sphere) + 0.002
    assert np.array_equal(shape[2] >= 0.5, stair[2])  # at a slab centre it is the observation


def test_shape_interpolation_does_not_depend_on_the_direction_of_the_slab_ids():
    """An output axis that runs against the input's (an LPS file refined onto a RAS grid) numbers its slabs
    downwards: the interpolation is the same shape (it was an empty volume, Dice 0, with falling ids)."""
    from lsdebm.data.slab_projection import interpolate_slabs

    grid = np.indices((40, 40, 40)).astype(float)
    sphere = np.linalg.norm(grid - 19.5, axis=0) < 14
    stair = sphere.copy()
    for s in range(10):
        stair[4 * s:4 * s + 4] = sphere[4 * s + 2]
    rising = interpolate_slabs(stair, np.arange(40) // 4, 0, (1.0, 1.0, 1.0))
    falling = interpolate_slabs(stair, 9 - np.arange(40) // 4, 0, (1.0, 1.0, 1.0))
    assert (rising >= 0.5).sum() > 1000
    assert np.allclose(falling, rising, atol=1e-6)


@pytest.mark.parametrize("learned,spacing,fused", [(False, 1.0, 0.0), (False, 1.0, 2.0), (True, 1.0, 2.0),
                                                   (True, 0.8, 2.0)])
def test_the_output_step_on_the_structures_box_gives_the_whole_grid_result(learned, spacing, fused):
    """A real thick-slice vertebra in a body-sized field of view: the output step computed on the box that
    its crop and its slabs reach equals the same step on the whole output grid, with a fraction of it."""
    from types import SimpleNamespace

    from lsdebm.bench.real import PARAMS
    from lsdebm.data.acquisition import observed_acquisition
    from lsdebm.data.boxes import BoxedVolume
    from lsdebm.data.frame import crop_label, paste_probabilities
    from lsdebm.data.real import degrade, isotropic, load_real_masks
    from lsdebm.data.slab_projection import measured_output
    from lsdebm.methods import RunSettings
    from lsdebm.runtime.checkpoint import load_checkpoint
    from lsdebm.runtime.loading import bundled_slab, output_step

    real = load_real_masks(split="val", levels=("L3",))[0]
    mask, affine = isotropic(real.mask, real.affine)
    lq = degrade(mask, affine, PARAMS, np.random.default_rng(2))
    big = np.zeros(tuple(n + 150 for n in lq.shape), np.uint8)
    at = (83, 41, 97)
    big[tuple(slice(a, a + n) for a, n in zip(at, lq.shape))] = lq
    affine = np.array(affine, float)
    affine[:3, 3] -= affine[:3, :3] @ np.array(at, float)
    crop, info = crop_label(big, affine, None, grid=64, spacing=2.0, frame="pose")
    # a model output that calls everything in the crop bone, up to its faces (fused = 0: the projection
    # alone then moves every column of the crop)
    probs = 0.9 + 0.09 * np.clip(ndimage.gaussian_filter(crop.astype(np.float32), 1.0), 0, 1)
    acq = observed_acquisition(big, affine)
    assert acq.thick_slice
    shape, out_affine = isotropic_grid(big.shape, affine, spacing)
    interpolator = output_step(load_checkpoint("reconnet-default").model, bundled_slab(), RunSettings())[1] \
        if learned else None
    ccfg = SimpleNamespace(projection=1.0, margin=0.02, interpolation=fused)
    whole, whole_note = consistent_probabilities(paste_probabilities(probs, info, shape, out_affine), big, affine, acq,
                                                 shape, out_affine, 1.0, 0.02, fused, interpolator)
    boxed, note = measured_output(probs, info, big, affine, acq, ccfg, shape, out_affine, interpolator)
    assert note == whole_note and note.startswith("projected onto")
    assert boxed.shape == tuple(shape) and boxed.values.size < 0.4 * np.prod(shape)
    np.testing.assert_allclose(boxed.full(), whole, rtol=1e-3, atol=1e-12)  # down to the ~1e-9 far from the slabs
    assert np.array_equal(boxed.full() >= 0.5, whole >= 0.5)
    if fused:  # with the slab interpolation the result is the vertebra, not the crop
        assert 10000 < (whole >= 0.5).sum() * spacing ** 3 < 2 * (big > 0).sum()
    given_box, _ = measured_output(probs, info, BoxedVolume.around(big, 1), affine, acq, ccfg, shape, out_affine,
                                   interpolator)  # the observation handed over on its own box, as reconstruct does
    np.testing.assert_array_equal(given_box.values, boxed.values)


def test_the_projection_box_does_not_move_with_the_thickness_estimates_rounding():
    """5 mm slabs found on two fields of view read 4.999999999999998 and 5.000000000000008 mm (the lattice fit's
    rounding); the projection's box, to which SlabNet's box is cut, must be the same for both: with a plain
    ceil it grew by a voxel, and a lumbar spine placed in a whole-body map came back 1268 voxels different."""
    from lsdebm.data.slab_projection import slab_pad

    for thickness in (4.999999999999998, 5.0, 5.000000000000008):
        assert slab_pad(Acquisition(0, thickness, 2.0, "staircase"), np.eye(4)) == [6, 6, 6]
    assert slab_pad(Acquisition(0, 5.2, 2.0, "staircase"), np.diag([1.0, 0.5, 2.0, 1.0])) == [7, 12, 4]
