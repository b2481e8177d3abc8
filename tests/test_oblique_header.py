"""A real vertebra's thick slices on an oblique scanner header, as MRI writes them (float32 sform): the default
output grid keeps the input's voxel edges and the result is as good as on an axis-aligned header."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from lsdebm.cli.main import main
from lsdebm.data.boxes import resample
from lsdebm.data.nifti import read_volume, write_volume
from lsdebm.data.real import isotropic, load_real_masks
from lsdebm.data.thickslice import ThickSliceParams, simulate_thick_slice
from lsdebm.evaluation.metrics import dice
from lsdebm.evaluation.real import REAL_SIMULATOR, native_grid

pytestmark = pytest.mark.usefixtures("single_thread")


def _rotated(affine, rotation):
    out = np.asarray(affine, float).copy()
    out[:3] = rotation @ out[:3]
    return out


def test_thick_slices_on_an_oblique_float32_header_are_refined_on_their_own_voxel_edges(tmp_path, capsys):
    m = load_real_masks(split="val", levels=("L3",))[0]
    truth, affine = isotropic(m.mask, m.affine, 1.0, 10.0)
    params = ThickSliceParams(plane="sagittal", thickness=5.0, offset=1.7, **REAL_SIMULATOR)
    lq = simulate_thick_slice(truth, 1.0, params, np.random.default_rng(3))
    native, native_affine = native_grid(lq, affine, params, 2)
    rotation = Rotation.from_euler("xyz", (12.0, -7.0, 20.0), degrees=True).as_matrix()
    truth_affine, native_affine = _rotated(affine, rotation), _rotated(native_affine, rotation)
    src = write_volume(tmp_path / "thick.nii.gz", native.astype(np.uint8), native_affine)
    stored = read_volume(src).affine  # float32 in the header: its 1 mm axes are 1 mm to ~1e-7 only
    assert not np.allclose(np.linalg.norm(stored[:3, :3], axis=0)[:2], 1.0, rtol=0, atol=1e-9)
    assert main(["reconstruct", str(src), "-o", str(tmp_path / "out.nii.gz"), "--threads", "1"]) == 0
    out = read_volume(tmp_path / "out.nii.gz")
    assert out.data.shape == (native.shape[0], native.shape[1], 5 * native.shape[2])  # no extra voxel
    corner = np.linalg.inv(out.affine) @ stored @ np.array([-0.5, -0.5, -0.5, 1.0])
    np.testing.assert_allclose(corner[:3], -0.5, atol=1e-3)  # the same outer voxel edge
    raw = dice(resample(native, truth.shape, truth_affine, stored, 0) > 0, truth > 0)
    refined = dice(resample(out.data, truth.shape, truth_affine, out.affine, 0) > 0, truth > 0)
    assert refined > raw + 0.015, (raw, refined)
