"""Acquisition finding (lsdebm.data.acquisition) on real vertebra masks degraded by the simulator."""
from __future__ import annotations

import numpy as np
import pytest

from lsdebm.data.acquisition import (
    Acquisition,
    detect_staircase,
    find_acquisition,
    grid_acquisition,
    observed_acquisition,
)
from lsdebm.data.real import degrade, isotropic, load_real_masks, slab_axis
from lsdebm.data.thickslice import ThickSliceParams
from lsdebm.errors import InputError

# (thickness, offset): offsets chosen so that no slab edge falls exactly on a voxel centre
# (there the simulator's nearest-slab resampling breaks the tie arbitrarily).
CASES = [(3.5, 0.7), (5.0, 2.3), (6.5, 4.1)]
PLANES = ("sagittal", "axial", "coronal")


@pytest.fixture(scope="module")
def real_l3():
    return {m.name: m for m in load_real_masks(split="val", levels=("L3",))}


@pytest.fixture(scope="module")
def clean(real_l3):
    """A natively isotropic (1 mm) real L3 on a 1 mm grid: the clean truth, no staircase."""
    m = real_l3["L3_vhmale"]
    assert np.allclose(m.spacing, 1.0)
    return isotropic(m.mask, m.affine, 1.0, 6.0)


def _lq(clean, plane, thickness, offset, seed=0):
    mask, affine = clean
    params = ThickSliceParams(plane=plane, thickness=thickness, gap=0.0, offset=offset, inplane_blur=0.7,
                              noise_amplitude=0.2, noise_smoothness=3.0)
    return degrade(mask, affine, params, np.random.default_rng(seed))


def _changed_edges(mask, axis):
    """Voxel edges i (between slices i-1 and i) where consecutive slices differ, and the occupied range."""
    m = np.moveaxis(mask != 0, axis, 0)
    n = m.shape[0]
    occ = np.flatnonzero(m.reshape(n, -1).any(1))
    edges = np.flatnonzero((m[1:] != m[:-1]).reshape(n - 1, -1).any(1)) + 1
    return edges, occ[0], occ[-1]


@pytest.mark.parametrize("plane", PLANES)
@pytest.mark.parametrize("thickness,offset", CASES)
def test_staircase_axis_and_thickness_on_degraded_real_mask(clean, plane, thickness, offset):
    _, affine = clean
    lq = _lq(clean, plane, thickness, offset)
    acq = find_acquisition(lq, affine)
    assert acq is not None
    assert acq.source == "staircase"
    assert acq.axis == slab_axis(affine, plane)
    assert abs(acq.thickness_mm - thickness) <= 0.051  # the lattice's step (0.05 voxel); was 0.3 before the
    assert 0.0 <= acq.offset_mm < acq.thickness_mm + 1e-9  # closest-period rule (0.07 mm off on average)


@pytest.mark.parametrize("plane", PLANES)
@pytest.mark.parametrize("thickness,offset", CASES)
def test_predicted_slab_boundaries_match_the_observed_staircase(clean, plane, thickness, offset):
    _, affine = clean
    lq = _lq(clean, plane, thickness, offset, seed=1)
    acq = find_acquisition(lq, affine)
    edges, lo, hi = _changed_edges(lq, acq.axis)
    n = lq.shape[acq.axis]
    spacing = float(np.linalg.norm(affine[:3, acq.axis]))
    slabs = acq.slab_of((np.arange(n) + 0.5) * spacing)  # slab of each slice centre
    assert np.all(np.diff(slabs) >= 0) and np.all(np.diff(slabs) <= 1)
    predicted = np.flatnonzero(np.diff(slabs)) + 1
    interior = predicted[(predicted > lo) & (predicted <= hi)]  # boundaries inside the occupied span
    assert len(edges) >= 5
    # where consecutive slices differ, the prediction puts a slab boundary ...
    assert np.isin(edges, predicted).mean() >= 0.7  # exact; a 0.05-0.1 mm period error drifts
    assert np.abs(edges[:, None] - predicted[None, :]).min(1).max() <= 1
    # ... and every predicted boundary inside the structure is seen in the mask (at most one voxel off)
    assert np.isin(interior, edges).mean() >= 0.7
    assert np.abs(interior[:, None] - edges[None, :]).min(1).max() <= 1
    # no slab boundary inside a slab: slices within one predicted slab are all identical
    m = np.moveaxis(lq != 0, acq.axis, 0)
    inside = np.array([slabs[i] == slabs[i - 1] for i in range(lo + 1, hi + 1)])
    same = np.array([np.array_equal(m[i], m[i - 1]) for i in range(lo + 1, hi + 1)])
    assert same[inside].mean() >= 0.9


def test_isotropic_clean_truth_has_no_acquisition(clean):
    mask, affine = clean
    assert find_acquisition(mask, affine) is None


def test_without_thick_slices_the_output_step_holds_the_input_grid_itself(clean):
    mask, affine = clean
    acq = observed_acquisition(mask, affine)
    assert acq == grid_acquisition(affine) == Acquisition(0, 1.0, 0.0, "grid")
    assert not acq.thick_slice and "no thick slices found" in acq.describe()
    coarse = np.diag([1.0, 1.0, 1.2, 1.0])  # the coarsest axis, as for a native grid
    assert grid_acquisition(coarse) == Acquisition(2, 1.2, 0.0, "grid")


def test_a_found_acquisition_wins_over_the_grid(clean):
    lq = _lq(clean, "sagittal", 5.0, 2.3)
    acq = observed_acquisition(lq, clean[1])
    assert acq == find_acquisition(lq, clean[1]) and acq.thick_slice


def test_thick_slices_resampled_linearly_come_back_no_worse(clean):
    """No staircase to find: the default must keep the observation rather than paste its 2 mm shape.

    (Before the grid fallback this case lost ~0.06 Dice: the model's coarse shape replaced an
    input that is already close to the truth.)"""
    from lsdebm.evaluation.metrics import dice
    from lsdebm.runtime.loading import load_models
    from lsdebm.tasks.reconstruct import reconstruct_volume

    mask, affine = clean
    params = ThickSliceParams(plane="sagittal", thickness=5.0, gap=0.0, offset=2.3, inplane_blur=0.7,
                              noise_amplitude=0.2, noise_smoothness=3.0, interpolation="linear")
    lq = degrade(mask, affine, params, np.random.default_rng(0))
    assert find_acquisition(lq, affine) is None
    result = reconstruct_volume(load_models("reconnet"), lq, affine)
    assert "no thick slices found" in result.provenance["projection"][0]
    raw = dice(lq, mask)
    assert dice(result.mask, mask) >= raw - 0.002
    unheld = reconstruct_volume(load_models("reconnet"), lq, affine, acquisition=None)
    # what the fallback prevents: the 2 mm shape pasted over the input (-0.0076 with the bundled ReconNet of
    # session 22, -0.013 with session 13's, -0.06 with the session-6 one)
    assert dice(unheld.mask, mask) < raw - 0.005 and dice(unheld.mask, mask) < dice(result.mask, mask) - 0.005


@pytest.mark.parametrize("plane, thickness", [("sagittal", 4.0), ("axial", 5.0), ("sagittal", 6.0)])
def test_staircase_on_an_anisotropic_truth_grid_wins_over_the_spacing(real_l3, plane, thickness):
    """Thick slices resampled onto the truth's own 1 x 1 x 2 mm grid (VerSe) are slabs of 4-6 mm, not 2 mm.

    (The spacing rule used to win: the output was the input itself, a gain of 0 on such files.)"""
    from lsdebm.data.frame import resample

    m = real_l3["L3_verse009"]
    assert sorted(np.round(m.spacing, 3)) == [1.0, 1.0, 2.0]
    truth, affine = isotropic(m.mask, m.affine, 1.0, 6.0)
    params = ThickSliceParams(plane=plane, thickness=thickness, gap=0.0, offset=1.3, inplane_blur=0.7,
                              noise_amplitude=0.2, noise_smoothness=3.0)
    lq = degrade(truth, affine, params, np.random.default_rng(0))
    coarse = affine @ np.diag([*m.spacing, 1.0])  # the mask's own spacing along the same axes
    shape = tuple(int(np.ceil(n / s)) for n, s in zip(truth.shape, m.spacing))
    on_grid = resample(lq, shape, coarse, affine, order=0)
    acq = find_acquisition(on_grid, coarse)
    assert acq.source == "staircase" and acq.axis == slab_axis(coarse, plane)
    assert abs(acq.thickness_mm - thickness) <= 0.051


@pytest.mark.parametrize("thickness", [3.0, 3.5])
def test_slabs_thinner_than_two_coarse_voxels_are_not_read_as_slabs_twice_as_thick(real_l3, thickness):
    """3 mm sagittal slabs on VerSe's 2 mm axis (1.5 voxels) change the mask at two neighbouring slices of every
    three; read as one face each, those pairs made 5.9 mm slabs, and the output step lost up to 0.0096 Dice holding
    the result to them (sessions 18-21). No staircase can show such slabs: the coarse grid itself is the observation."""
    from lsdebm.data.frame import resample

    m = real_l3["L3_verse009"]
    truth, affine = isotropic(m.mask, m.affine, 1.0, 6.0)
    params = ThickSliceParams(plane="sagittal", thickness=thickness, gap=0.0, offset=1.3, inplane_blur=0.7,
                              noise_amplitude=0.2, noise_smoothness=3.0)
    lq = degrade(truth, affine, params, np.random.default_rng(0))
    coarse = affine @ np.diag([*m.spacing, 1.0])
    shape = tuple(int(np.ceil(n / s)) for n, s in zip(truth.shape, m.spacing))
    on_grid = resample(lq, shape, coarse, affine, order=0)
    axis = slab_axis(coarse, "sagittal")
    assert m.spacing[axis] == pytest.approx(2.0)
    acq = find_acquisition(on_grid, coarse)
    assert (acq.source, acq.axis, acq.thickness_mm) == ("spacing", axis, pytest.approx(2.0))
    on_fine = find_acquisition(lq, affine)  # the same slabs on the 1 mm grid are read as they are
    assert on_fine.source == "staircase" and abs(on_fine.thickness_mm - thickness) <= 0.051


def test_native_thick_slice_grid_is_found_by_spacing():
    mask = np.zeros((20, 24, 8), np.uint8)
    mask[4:16, 5:19, 2:6] = 1
    affine = np.diag([1.0, 1.0, 5.0, 1.0])
    affine[:3, 3] = [10.0, -3.0, 7.0]
    acq = find_acquisition(mask, affine)
    assert acq == Acquisition(2, 5.0, 0.0, "spacing")
    # the 5 mm axis may be any axis, in any orientation
    perm = np.zeros((4, 4))
    perm[:3, :3] = np.array([[0, 0, 1], [0, -5.0, 0], [1, 0, 0]])  # array axis 1 is the 5 mm one
    perm[3, 3] = 1
    acq = find_acquisition(np.transpose(mask, (2, 0, 1)), perm)
    assert acq.source == "spacing" and acq.axis == 1 and acq.thickness_mm == pytest.approx(5.0)


def test_real_native_anisotropic_mask_found_by_spacing(real_l3):
    m = real_l3["L3_verse009"]  # a real 1 x 1 x 2 mm mask
    acq = find_acquisition(m.mask, m.affine)
    assert acq is not None and acq.source == "spacing"
    assert acq.axis == int(np.argmax(m.spacing))
    assert acq.thickness_mm == pytest.approx(max(m.spacing))


def test_options_override_and_fill_in_from_the_staircase(clean):
    _, affine = clean
    lq = _lq(clean, "sagittal", 5.0, 2.3)
    auto = find_acquisition(lq, affine)
    acq = find_acquisition(lq, affine, slice_axis=0, slice_thickness=4.0)
    assert (acq.axis, acq.thickness_mm, acq.source) == (0, 4.0, "options")
    # thickness only: the staircase gives the axis and offset
    acq = find_acquisition(lq, affine, slice_thickness=6.0)
    assert (acq.axis, acq.thickness_mm, acq.source) == (auto.axis, 6.0, "options")
    assert acq.offset_mm == pytest.approx(auto.offset_mm)
    # axis only, the staircase's axis: its thickness
    acq = find_acquisition(lq, affine, slice_axis=auto.axis)
    assert acq.thickness_mm == pytest.approx(auto.thickness_mm) and acq.source == "options"
    # axis only, another axis: the voxel spacing, offset 0
    other = (auto.axis + 1) % 3
    acq = find_acquisition(lq, affine, slice_axis=other)
    assert (acq.axis, acq.thickness_mm, acq.offset_mm, acq.source) == (other, 1.0, 0.0, "options")


def test_options_on_isotropic_mask_without_staircase(clean):
    mask, affine = clean
    acq = find_acquisition(mask, affine, slice_axis=1, slice_thickness=3.0)
    assert acq == Acquisition(1, 3.0, 0.0, "options")


def test_option_errors_name_the_option(clean):
    mask, affine = clean
    with pytest.raises(InputError, match="--slice-axis"):
        find_acquisition(mask, affine, slice_axis=3)
    with pytest.raises(InputError, match="--slice-axis"):
        find_acquisition(mask, affine, slice_axis=-1)
    with pytest.raises(InputError, match="--slice-thickness"):
        find_acquisition(mask, affine, slice_axis=0, slice_thickness=0.0)
    with pytest.raises(InputError, match="--slice-thickness"):
        find_acquisition(mask, affine, slice_axis=0, slice_thickness=-2.0)
    with pytest.raises(InputError, match="--slice-axis"):
        find_acquisition(mask, affine, slice_thickness=4.0)  # isotropic, no staircase: which axis?
    native = np.diag([1.0, 1.0, 5.0, 1.0])
    small = np.zeros((10, 10, 6), np.uint8)
    small[2:8, 2:8, 1:5] = 1
    with pytest.raises(InputError, match="--slice-thickness.*thinner"):
        find_acquisition(small, native, slice_axis=2, slice_thickness=3.0)
    with pytest.raises(InputError, match="--slice-thickness.*thinner"):
        find_acquisition(small, native, slice_thickness=3.0)  # axis from the spacing
    # as thick as the voxels is fine
    assert find_acquisition(small, native, slice_axis=2, slice_thickness=5.0).thickness_mm == 5.0
    # a thickness that leaves fewer than two slabs, or a unit mistake (um, cm), is refused by name
    with pytest.raises(InputError, match="--slice-thickness 16 mm leaves fewer than two slabs in the input's 30 mm"):
        find_acquisition(small, native, slice_axis=2, slice_thickness=16.0)
    assert find_acquisition(small, native, slice_axis=2, slice_thickness=15.0).thickness_mm == 15.0
    for absurd in (120.0, 5000.0, 1e9, float("inf"), float("nan")):
        with pytest.raises(InputError, match="expected a slab thickness in mm"):
            find_acquisition(small, native, slice_axis=2, slice_thickness=absurd)


def test_slab_of_is_floor_of_position_over_thickness():
    acq = Acquisition(0, 4.0, 1.0, "options")
    np.testing.assert_array_equal(acq.slab_of(np.array([0.5, 1.0, 4.9, 5.0, 9.0, 12.99])), [-1, 0, 0, 1, 2, 2])
    assert "4.00 mm" in acq.describe() and "options" in acq.describe()


@pytest.mark.parametrize("offset", [0.4, 1.9, 3.3])
def test_staircase_on_a_1_5mm_grid_gives_slab_thickness_and_offset_below_the_voxel(offset):
    """5 mm slabs on a 1.5 mm grid are 3.33 voxels: the search grid alone said 4.95 or 5.025 mm.

    Each slab edge shows at the voxel edge nearest to it; the least-squares lattice through them
    must give the thickness within 0.02 mm and the offset within 0.3 mm."""
    from lsdebm.data.frame import resample

    rng = np.random.default_rng(7)
    native = (rng.random((30, 16, 16)) < 0.5).astype(np.uint8)  # every slab differs from its neighbours
    native_affine = np.diag([5.0, 1.0, 1.0, 1.0])
    grid = np.diag([1.5, 1.0, 1.0, 1.0])
    grid[0, 3] = -2.5 + 0.75 + offset  # the 1.5 mm grid's outer edge lies `offset` mm past the first slab's
    staircase = resample(native, (96, 16, 16), grid, native_affine, order=0)
    acq = find_acquisition(staircase, grid)
    assert acq.source == "staircase" and acq.axis == 0
    assert abs(acq.thickness_mm - 5.0) < 0.02
    true_offset = (-offset) % 5.0  # slab edges in mm from the grid's outer edge
    assert abs((acq.offset_mm - true_offset + 2.5) % 5.0 - 2.5) < 0.3


def test_the_staircase_is_found_on_the_foregrounds_box_in_the_volumes_coordinates(clean):
    """The edges are searched on the foreground's box only; the offset stays in the whole volume's index frame
    (more background before the slabs moves the offset by exactly that much, modulo a slab)."""
    _, affine = clean
    lq = _lq(clean, "axial", 5.0, 2.3)
    acq = find_acquisition(lq, affine)
    axis = acq.axis
    for before in (0, 7, 40):
        pad = [(0, 3)] * 3
        pad[axis] = (before, 3)
        moved = find_acquisition(np.pad(lq, pad), affine)
        spacing = float(np.linalg.norm(affine[:3, axis]))
        assert moved.axis == acq.axis and moved.thickness_mm == pytest.approx(acq.thickness_mm, abs=1e-9)
        shift = (moved.offset_mm - acq.offset_mm - before * spacing) % acq.thickness_mm
        assert min(shift, acq.thickness_mm - shift) < 1e-6


@pytest.mark.parametrize("shape", [(1, 1, 1), (4, 1, 6)])
def test_a_structure_in_one_slice_has_no_staircase(shape):
    """A single voxel (or a one-slice outline) used to fail inside the edge search (reshape of an empty array)."""
    mask = np.zeros((9, 9, 9), np.uint8)
    mask[3:3 + shape[0], 4:4 + shape[1], 2:2 + shape[2]] = 1
    assert detect_staircase(mask, np.eye(4)) is None
    assert find_acquisition(mask, np.diag([1.0, 1.0, 1.0, 1.0])) is None
