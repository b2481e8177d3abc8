"""Thick slices resampled onto a grid they are oblique to are recognised, and nothing else is."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from lsdebm.data.acquisition import detect_staircase
from lsdebm.data.nifti import write_volume
from lsdebm.data.real import isotropic, load_real_masks
from lsdebm.data.thickslice import ThickSliceParams, simulate_thick_slice
from lsdebm.data.tilted_slabs import find_tilted_slabs


@pytest.fixture(scope="module")
def vertebra():
    """A real L3 of a validation subject at 1 mm with room around it."""
    m = load_real_masks(split="val", levels=("L3",))[0]
    return isotropic(m.mask, m.affine, 1.0, 12.0)


def thick_slices(mask, deg: float, thickness: float = 5.0, interpolation: str = "nearest"):
    """Sagittal slabs of a grid tilted by ``deg`` about array axis 0, resampled back onto ``mask``'s grid."""
    rot = Rotation.from_euler("x", deg, degrees=True).as_matrix()
    centre = (np.array(mask.shape) - 1) / 2
    tilted = ndimage.affine_transform(mask.astype(np.float32), rot, offset=centre - rot @ centre, order=1) >= 0.5
    params = ThickSliceParams(plane="sagittal", thickness=thickness, offset=1.3, gap=0.0, inplane_blur=0.7,
                              noise_amplitude=0.2, noise_smoothness=3.0, threshold=0.5, interpolation=interpolation)
    lq = simulate_thick_slice(tilted, 1.0, params, np.random.default_rng(0))
    back = ndimage.affine_transform(lq.astype(np.float32), rot.T, offset=centre - rot.T @ centre, order=0)
    return (back >= 0.5).astype(np.uint8)


@pytest.mark.parametrize("deg, thickness", [(10.0, 5.0), (20.0, 7.0)])
def test_tilted_slabs_are_found_with_their_tilt_and_thickness(vertebra, deg, thickness):
    mask, affine = vertebra
    lq = thick_slices(mask, deg, thickness)
    assert detect_staircase(lq, affine) is None  # the array-axis finder cannot see them: why this exists
    found = find_tilted_slabs(lq, affine)
    assert found is not None
    assert found.axis == 2 and abs(found.tilt_deg - deg) <= 1.0
    assert abs(found.thickness_mm - thickness) <= 0.1
    assert abs(np.linalg.norm(found.normal) - 1.0) < 1e-9 and "tilted by" in found.describe()


@pytest.mark.parametrize("deg", [2.0, 3.0])
def test_slabs_tilted_by_a_few_degrees_are_found_too(vertebra, deg):
    """Thick slices sliced in the scanner's frame, put on a truth grid turned 2-3 degrees against it (a VerSe CT's
    oblique header): the array-axis finder sees faces wandering over several slices, and the tilted finder
    reached down to 4 degrees only, so the input came back unchanged."""
    mask, affine = vertebra
    lq = thick_slices(mask, deg, 5.0)
    assert detect_staircase(lq, affine) is None
    found = find_tilted_slabs(lq, affine)
    assert found is not None and found.axis == 2 and abs(found.tilt_deg - deg) <= 1.0
    assert abs(found.thickness_mm - 5.0) <= 0.1


def test_smooth_aligned_and_linearly_resampled_masks_are_not_taken_for_tilted_slabs(vertebra):
    mask, affine = vertebra
    assert find_tilted_slabs(mask, affine) is None  # the high-quality mask itself
    assert find_tilted_slabs(thick_slices(mask, 0.0), affine) is None  # aligned slabs: detect_staircase's
    assert find_tilted_slabs(thick_slices(mask, 10.0, interpolation="linear"), affine) is None  # no staircase
    assert find_tilted_slabs(np.zeros((8, 8, 8), np.uint8), np.eye(4)) is None


def test_reconstruct_refines_a_tilted_staircase_on_its_own_slab_grid(vertebra, tmp_path, capsys):
    from lsdebm.cli.main import main
    from lsdebm.data.nifti import read_volume
    from lsdebm.evaluation.metrics import dice

    mask, affine = vertebra
    lq = thick_slices(mask, 15.0)
    src, out = tmp_path / "tilted.nii.gz", tmp_path / "out.nii.gz"
    write_volume(src, lq, affine)
    assert main(["reconstruct", str(src), "-o", str(out), "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "no thick slices found" in err and "slabs are tilted by 15°" in err and "own slab grid" in err
    result = read_volume(out)
    assert result.data.shape == mask.shape and np.allclose(result.affine, affine)  # back on the input's grid
    before, after = dice(lq, mask), dice(result.data, mask)
    assert after > before + 0.01, (before, after)  # unchanged (gain 0) before the slab grid was used
    prov = json.loads((tmp_path / "out.provenance.json").read_text())
    assert prov["acquisition"]["source"] == "tilted" and abs(prov["acquisition"]["tilt_deg"] - 15.0) <= 1.0


def test_a_label_map_keeps_its_other_labels_and_warns_once(vertebra):
    import warnings

    from lsdebm.errors import InputWarning
    from lsdebm.evaluation.metrics import dice
    from lsdebm.runtime.loading import load_models
    from lsdebm.tasks.reconstruct import reconstruct_volume

    mask, affine = vertebra
    lq = thick_slices(mask, 12.0).astype(np.int16) * 22
    lq[:3, :3, :3] = 99
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = reconstruct_volume(load_models("reconnet"), lq, affine, labels=[22])
    assert result.provenance["acquisition"]["source"] == "tilted" and result.mask.shape == lq.shape
    assert int((result.mask == 99).sum()) == 27  # carried over, on the input's own grid
    assert dice(result.mask == 22, mask) > dice(lq == 22, mask) + 0.01
    skips = [w for w in caught if issubclass(w.category, InputWarning) and "skipping label 99" in str(w.message)]
    assert len(skips) == 1  # the slab-grid pass does not repeat what the caller already reported


def test_unguided_runs_do_not_use_the_slab_grid_from_the_cli_or_the_api(vertebra, tmp_path, capsys):
    """--unguided looks at no slabs: the CLI neither reports nor uses the slab grid, as the API does not."""
    from lsdebm.cli.main import main
    from lsdebm.data.nifti import read_volume
    from lsdebm.data.tilted_slabs import find_tilted_slabs
    from lsdebm.methods import RunSettings
    from lsdebm.runtime.loading import load_models
    from lsdebm.tasks.reconstruct import reconstruct_volume

    mask, affine = vertebra
    lq = thick_slices(mask, 15.0)
    src, out = tmp_path / "oblique.nii.gz", tmp_path / "out.nii.gz"
    write_volume(src, lq, affine)
    # on the CPU like the API call below ("auto" is CUDA on a GPU machine, whose TF32 convolutions flip a voxel)
    assert main(["reconstruct", str(src), "-o", str(out), "--threads", "1", "--unguided", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "no thick slices found" in err and "slabs are tilted" not in err
    prov = json.loads((tmp_path / "out.provenance.json").read_text())
    assert (prov.get("acquisition") or {}).get("source") != "tilted"
    settings = RunSettings(consistency_weight=0.0, projection=0.0, interpolation=0.0)
    models = load_models("reconnet")
    api = reconstruct_volume(models, lq, affine, settings=settings)
    assert np.array_equal(api.mask, read_volume(out).data)
    given = reconstruct_volume(models, lq, affine, settings=settings, acquisition=find_tilted_slabs(lq, affine))
    assert np.array_equal(given.mask, api.mask)  # tilted slabs given to an unguided run are not used either


def test_compare_refines_a_tilted_staircase_on_its_slab_grid_as_the_cli_does(vertebra):
    from lsdebm.evaluation.metrics import dice
    from lsdebm.methods import RunSettings
    from lsdebm.review.compare import compare_methods, load_compare_checkpoints
    from lsdebm.runtime.loading import load_models
    from lsdebm.tasks.reconstruct import reconstruct_volume

    mask, affine = vertebra
    lq = thick_slices(mask, 15.0)
    comparison = compare_methods(lq, affine, load_compare_checkpoints(), RunSettings(seed=0), reference=mask)
    assert comparison.tilted is not None and abs(comparison.tilted.tilt_deg - 15.0) <= 1.0
    results = comparison.by_key()
    assert results["reconnet"].provenance["acquisition"]["source"] == "tilted"
    for key in ("reconnet", "lsdebm"):
        assert results[key].mask.shape == lq.shape
        assert results[key].metrics["dsc"] > results["input"].metrics["dsc"] + 0.01, key  # was no output step
    # what lsdebm reconstruct writes for the same vertebra in a larger map (the slab grid's lattice is fixed in
    # world coordinates, so the whole map and Compare's box of it are sampled alike)
    pad = 20
    big, big_affine = np.pad(lq, pad), affine.copy()
    big_affine[:3, 3] -= affine[:3, :3] @ np.full(3, pad)
    cli = reconstruct_volume(load_models("reconnet"), big, big_affine, labels=[1]).mask[pad:-pad, pad:-pad, pad:-pad]
    assert dice(results["reconnet"].mask, cli) > 0.999
