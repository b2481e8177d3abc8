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
