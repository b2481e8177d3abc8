import numpy as np
import pytest

from lsdebm.data.phantoms import make_vertebra
from lsdebm.data.thickslice import (
    TEST_RANGES,
    TRAIN_RANGES,
    ThickSliceParams,
    sample_params,
    simulate_thick_slice,
    slab_weights,
)
from lsdebm.errors import InputError
from lsdebm.evaluation.metrics import dice


def _edges_along(mask, axis):
    return int(np.count_nonzero(np.diff(mask.astype(np.int8), axis=axis)))


@pytest.mark.parametrize("plane,axis", [("sagittal", 2), ("axial", 0), ("coronal", 1)])
def test_staircase_along_through_plane(plane, axis):
    hq = make_vertebra("L3", 2).mask
    params = ThickSliceParams(plane=plane, thickness=6.0, gap=0.0, noise_amplitude=0.0)
    lq = simulate_thick_slice(hq, 2.0, params, np.random.default_rng(0))
    assert lq.shape == hq.shape and lq.dtype == np.uint8
    # Piecewise constant along the through-plane axis: one distinct slice per slab.
    slices = np.moveaxis(lq, axis, 0).reshape(lq.shape[axis], -1)
    changes = np.count_nonzero(np.any(slices[1:] != slices[:-1], axis=1))
    n_slabs = len(slab_weights(hq.shape[axis], 2.0, params)[1])
    assert changes <= n_slabs - 1 < hq.shape[axis] - 1


def test_lq_differs_more_along_through_plane():
    hq = make_vertebra("L3", 2).mask
    lq = simulate_thick_slice(hq, 2.0, ThickSliceParams(thickness=6.0), np.random.default_rng(0))
    # Sagittal slabs: LQ transitions along X are sparser than in HQ, much more than in-plane.
    ratio_through = _edges_along(lq, 2) / _edges_along(hq, 2)
    ratio_in = np.mean([_edges_along(lq, a) / _edges_along(hq, a) for a in (0, 1)])
    assert ratio_through < ratio_in


def test_dice_in_plausible_range_and_thin_parts_damaged():
    for seed in range(3):
        phantom = make_vertebra("L1", seed)
        lq = simulate_thick_slice(phantom.mask, 2.0, ThickSliceParams(), np.random.default_rng(seed))
        assert 0.6 < dice(lq, phantom.mask) < 0.92
        spinous = phantom.parts == 4
        assert (lq[spinous] > 0).mean() < 0.95


def test_slab_weights_rows_sum_to_one():
    weights, centres = slab_weights(20, 2.0, ThickSliceParams(thickness=5.0, gap=1.0, offset=2.0))
    np.testing.assert_allclose(weights.sum(1), 1.0)
    assert np.all(np.diff(centres) > 0)


def test_validation_names_allowed_values():
    with pytest.raises(InputError, match="sagittal"):
        ThickSliceParams(plane="oblique")
    with pytest.raises(InputError, match="thickness"):
        ThickSliceParams(thickness=50.0)


@pytest.mark.parametrize("field, value, expected", [
    ("thickness", "5", "ThickSliceParams.thickness='5': expected a number of mm in [1.0, 10.0]"),  # was TypeError
    ("thickness", None, "ThickSliceParams.thickness=None: expected a number of mm in [1.0, 10.0]"),  # was TypeError
    ("thickness", -1.0, "ThickSliceParams.thickness=-1.0: expected a number of mm in [1.0, 10.0]"),
    ("gap", float("nan"), "ThickSliceParams.gap=nan: expected a number of mm in [0.0, 5.0]"),
    ("noise_amplitude", float("inf"), "ThickSliceParams.noise_amplitude=inf: expected a number in [0.0, 0.5]"),
    ("threshold", True, "ThickSliceParams.threshold=True: expected a number in [0.1, 0.9]"),
    ("offset", "1", "ThickSliceParams.offset='1': expected a number of mm in [0, thickness + gap) = [0, 5)"),
    ("offset", float("nan"), "ThickSliceParams.offset=nan: expected a number of mm in [0, thickness + gap) = [0, 5)"),
    ("plane", ["axial"], "ThickSliceParams.plane=['axial']: expected one of axial, coronal, sagittal"),  # unhashable
    ("interpolation", None, "ThickSliceParams.interpolation=None: expected one of nearest, linear"),
])
def test_wrong_typed_or_out_of_range_fields_are_one_input_error_naming_them(field, value, expected):
    with pytest.raises(InputError) as info:
        ThickSliceParams(**{field: value})
    assert str(info.value) == expected


def test_numpy_numbers_are_taken_as_floats():
    params = ThickSliceParams(thickness=np.int64(5), noise_amplitude=np.float32(0.25), offset=np.float64(1))
    assert params == ThickSliceParams(thickness=5.0, noise_amplitude=0.25, offset=1.0)
    assert all(type(v) is float for k, v in params.as_dict().items() if k not in ("plane", "interpolation"))


def test_sample_params_deterministic_and_in_range():
    a = sample_params(np.random.default_rng(4), TRAIN_RANGES)
    assert a == sample_params(np.random.default_rng(4), TRAIN_RANGES)
    thick = [sample_params(np.random.default_rng(i), TEST_RANGES).thickness for i in range(200)]
    assert max(thick) > TRAIN_RANGES.thickness[1]  # test set sees slices training never sees
    assert all(TEST_RANGES.thickness[0] <= t <= TEST_RANGES.thickness[1] for t in thick)
