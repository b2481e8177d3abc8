"""Thick slices as other tools hand them over: resampled onto a fine grid with cubic splines, or to be written
on a grid turned against the slabs (``--like`` a CT or a 3D T1). Both came back (almost) unrefined."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

import lsdebm
from lsdebm.data.acquisition import find_acquisition
from lsdebm.data.boxes import resample
from lsdebm.data.real import isotropic, load_real_masks
from lsdebm.data.thickslice import ThickSliceParams, simulate_thick_slice
from lsdebm.evaluation.metrics import dice
from lsdebm.evaluation.real import REAL_SIMULATOR, native_grid
from lsdebm.tasks.regrid import parallel

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def l3():
    m = load_real_masks(split="val", levels=("L3",))[0]
    return isotropic(m.mask, m.affine, 1.0, 10.0)


def _native(truth, affine, thickness, offset, axis=2, plane="sagittal"):
    params = ThickSliceParams(plane=plane, thickness=thickness, offset=offset, **REAL_SIMULATOR)
    lq = simulate_thick_slice(truth, 1.0, params, np.random.default_rng(5))
    return native_grid(lq, affine, params, axis)


@pytest.mark.parametrize("thickness,offset", [(4.0, 1.5), (5.0, 2.5), (6.0, 3.0)])
def test_a_staircase_resampled_with_cubic_splines_is_still_found(l3, thickness, offset):
    """``scipy.ndimage`` resampling (cubic by default) spreads a slab face over two or three slices where it
    falls near a slice centre; those edges fitted no lattice at 4 and 6 mm (the input came back unchanged)."""
    truth, affine = l3
    native, native_affine = _native(truth, affine, thickness, offset)
    index_map = np.linalg.inv(native_affine) @ affine
    cubic = ndimage.affine_transform(native.astype(np.float32), index_map[:3, :3], index_map[:3, 3],
                                     output_shape=truth.shape, order=3) >= 0.5
    nearest = resample(native, truth.shape, affine, native_affine, order=0)
    found, reference = find_acquisition(cubic, affine), find_acquisition(nearest, affine)
    assert reference is not None and reference.source == "staircase"
    assert found is not None and found.source == "staircase" and found.axis == reference.axis == 2
    assert abs(found.thickness_mm - thickness) <= 0.1
    assert abs(found.offset_mm - reference.offset_mm) <= 0.6  # within the slice the face falls in


def test_every_axis_pair_must_agree_for_grids_to_be_parallel():
    affine = np.diag([1.0, 1.0, 5.0, 1.0])
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0]) @ np.diag([2.0, 1.0, 1.0, 1.0])[:, [1, 0, 2, 3]]
    assert parallel(affine, flipped)  # permuted, flipped, other spacing: parallel
    assert parallel(affine, affine.astype(np.float32).astype(float) + 1e-8)
    turned = affine.copy()
    turned[:3, :3] = Rotation.from_euler("z", 0.5, degrees=True).as_matrix() @ affine[:3, :3]
    assert not parallel(affine, turned)


@pytest.mark.parametrize("degrees", [2.0, 5.0])
def test_an_output_grid_turned_against_the_slabs_gets_the_whole_output_step(l3, degrees):
    """A native 5 mm series written on a grid turned by a few degrees: the output step used to be skipped
    ("not parallel to the slabs", 5 degrees) or fed slabs read along the wrong grid lines (2 degrees), and the
    result was no better, often worse, than the input. Now it is refined on the input's isotropic grid and
    brought onto the grid asked for."""
    truth, affine = l3
    native, native_affine = _native(truth, affine, 5.0, 1.2)
    centre = affine[:3, :3] @ (np.array(truth.shape) / 2.0) + affine[:3, 3]
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("xyz", (degrees, degrees / 2, -degrees), degrees=True).as_matrix()
    turn[:3, 3] = centre - turn[:3, :3] @ centre
    grid = turn @ affine
    truth_there = resample(truth.astype(np.float32), truth.shape, grid, affine, 1) >= 0.5
    raw = dice(resample(native, truth.shape, grid, native_affine, 0) != 0, truth_there)
    result = lsdebm.reconstruct(native, native_affine, out_grid=(truth.shape, grid))
    assert np.allclose(result.affine, grid)
    assert result.provenance["acquisition"]["refined_on"] == "a grid parallel to the slabs"
    assert dice(np.asarray(result.mask) != 0, truth_there) > raw + 0.015


def test_the_command_line_says_when_it_refines_for_a_turned_like_grid(l3, tmp_path, capsys):
    from lsdebm.cli.main import main
    from lsdebm.data.nifti import write_volume

    truth, affine = l3
    native, native_affine = _native(truth, affine, 5.0, 1.2)
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("z", 3.0, degrees=True).as_matrix()
    src = write_volume(tmp_path / "thick.nii.gz", native.astype(np.uint8), native_affine)
    like = write_volume(tmp_path / "ct.nii.gz", np.zeros(truth.shape, np.uint8), turn @ affine)
    parallel_like = write_volume(tmp_path / "t1.nii.gz", np.zeros(truth.shape, np.uint8), affine)
    assert main(["reconstruct", str(src), "--like", str(like), "-o", str(tmp_path / "a.nii.gz"), "--threads", "1"]) == 0
    assert "output grid turned against the slabs" in capsys.readouterr().err
    assert main(["reconstruct", str(src), "--like", str(parallel_like), "-o", str(tmp_path / "b.nii.gz"),
                 "--threads", "1"]) == 0
    assert "turned against" not in capsys.readouterr().err


@pytest.mark.parametrize("spacing,refined_at", [(1.5, 1.5), (0.8, 1.0)])
def test_a_turned_output_grid_is_refined_at_the_finer_of_its_own_and_the_inputs_resolution(l3, spacing, refined_at):
    """The grid parallel to the slabs was the input's finest: a 0.6 mm series written on a 0.8 mm CT grid paid
    2.4x the voxels for detail resampled away (a lumbar spine 9.8 s instead of 4.4 s); it is not finer than the
    output grid now, as on an output grid parallel to the slabs."""
    truth, affine = l3
    native, native_affine = _native(truth, affine, 5.0, 1.2)
    shape = tuple(int(np.ceil(n / spacing)) for n in truth.shape)
    turn = np.eye(4)
    turn[:3, :3] = Rotation.from_euler("xz", (3.0, -2.0), degrees=True).as_matrix()
    grid = turn @ affine @ np.diag([spacing, spacing, spacing, 1.0])
    truth_there = resample(truth.astype(np.float32), shape, grid, affine, 1) >= 0.5
    raw = dice(resample(native, shape, grid, native_affine, 0) != 0, truth_there)
    result = lsdebm.reconstruct(native, native_affine, out_grid=(shape, grid))
    assert result.provenance["acquisition"]["refined_spacing_mm"] == pytest.approx(refined_at)
    assert np.shape(result.mask) == shape
    assert dice(np.asarray(result.mask) != 0, truth_there) > raw + 0.015


def test_refined_labels_are_brought_back_as_from_the_whole_field_of_view():
    """Each label's probabilities are resampled only from the box where they reach 0.5 (neighbouring labels'
    tails made it the whole field of view: 0.36 s per vertebra of a spine); the result is the same."""
    from lsdebm.tasks.reconstruct import ReconstructionResult
    from lsdebm.tasks.regrid import brought_back

    rng = np.random.default_rng(3)
    field = ndimage.gaussian_filter(rng.random((40, 36, 30)), 2.5)
    probs = np.clip((field - field.mean()) * 40 + 0.3, 0, 1).astype(np.float32)  # several blobs, long tails
    probs[..., :4] = probs[..., -4:] = 0.0  # outside the crops
    mask = np.zeros(probs.shape, np.uint8)
    mask[:20][probs[:20] >= 0.5], mask[20:][probs[20:] >= 0.5] = 3, 7
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    grid = np.eye(4)
    grid[:3, :3] = Rotation.from_euler("xyz", (4, -3, 5), degrees=True).as_matrix() * 0.9
    inner = ReconstructionResult(mask=mask, probabilities=probs, labels=[3, 7], crops=np.zeros(0), crop_infos=[],
                                 refinement=None, affine=affine)
    out = brought_back(inner, mask, affine, ((44, 40, 33), grid), True)
    expected = resample(mask, (44, 40, 33), grid, affine, 0)
    for label in (3, 7):
        own = np.where((mask == label) | (mask == 0), probs, 0.0).astype(np.float32)
        here = resample(own, (44, 40, 33), grid, affine, 1) >= 0.5
        expected[expected == label] = 0
        expected[here] = label
    assert (probs[mask == 0] > 0).mean() > 0.3  # the tails reach far into the background
    assert np.array_equal(np.asarray(out.mask), expected)
    assert np.allclose(out.probabilities, resample(probs, (44, 40, 33), grid, affine, 1), rtol=0, atol=1e-6)
    assert (expected == 3).sum() > 100 and (expected == 7).sum() > 100
