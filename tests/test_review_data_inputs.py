"""Bad inputs to the review, data and metrics functions get one InputError naming the problem (no bare
numpy/nibabel/torch traceback, no silently wrong result, no partial file)."""
import nibabel as nib
import numpy as np
import pytest
import torch

from lsdebm.data.nifti import read_volume, write_volume
from lsdebm.data.phantoms import make_vertebra, subject_params
from lsdebm.data.real import load_real_masks
from lsdebm.data.thickslice import ThickSliceParams, simulate_thick_slice
from lsdebm.errors import InputError
from lsdebm.evaluation.metrics import compute_metrics, dice, hd95
from lsdebm.review.overlap import overlap_map
from lsdebm.review.roi import region_metrics, review_metrics
from lsdebm.runtime.checkpoint import load_checkpoint


def cube(shape=(8, 8, 8)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[2:6, 2:6, 2:6] = 1
    return mask


M = cube()
BAD_MASKS = {
    "NaN": (np.where(M > 0, 1.0, np.nan), "NaN"),
    "negative": (-M.astype(float), "negative"),
    "complex": (M.astype(complex), "complex"),
}
REVIEWS = {
    "review_metrics": lambda pred, ref: review_metrics(pred, ref, 2.0),
    "region_metrics": lambda pred, ref: region_metrics(pred, ref, 2.0, None),
    "overlap_map": overlap_map,
}


# 1. review functions check masks as compute_metrics does
@pytest.mark.parametrize("review", REVIEWS, ids=str)
@pytest.mark.parametrize("bad", BAD_MASKS, ids=str)
def test_review_refuses_masks_compute_metrics_refuses(review, bad):
    data, words = BAD_MASKS[bad]
    with pytest.raises(InputError, match="prediction") as info:
        REVIEWS[review](data, M)
    assert words in str(info.value)
    with pytest.raises(InputError, match="reference"):
        REVIEWS[review](M, data)


def test_review_takes_label_maps_of_several_labels_as_whole_structures():
    labels = M.astype(np.int32) * 7
    labels[2:4] *= 3  # labels 21 and 7
    rows = review_metrics(labels, M, 2.0)
    assert rows[0].metrics["dsc"] == 1.0
    assert overlap_map(labels, M).counts["TP"] == int(M.sum())


@pytest.mark.parametrize("parts, words", [(np.where(M > 0, 1.0, np.nan), "NaN"), (M * 1.5, "fractional"),
                                          (-M.astype(np.int16), "negative")])
def test_review_refuses_bad_part_label_maps(parts, words):
    with pytest.raises(InputError, match=f"part label map.*{words}"):
        review_metrics(M, M, 2.0, parts=parts)


def test_review_refuses_a_nan_roi_mask():
    with pytest.raises(InputError, match="ROI mask.*NaN"):
        review_metrics(M, M, 2.0, roi=np.where(M > 0, 1.0, np.nan))


# 2. the thick-slice simulator refuses what would silently give an all-zero mask
@pytest.mark.parametrize("bad", ["NaN", "negative"])
def test_thick_slice_refuses_nan_or_negative_masks(bad):
    data = np.where(M > 0, np.nan, 0.0) if bad == "NaN" else -M.astype(float)
    with pytest.raises(InputError, match=bad):
        simulate_thick_slice(data, 2.0, ThickSliceParams(), np.random.default_rng(0))


# 3. write_mesh checks the affine and level before any vertex is made
@pytest.mark.parametrize("affine, words", [(np.diag([1.0, 1.0, 0.0, 1.0]), "singular"),
                                           (np.full((4, 4), np.nan), "NaN"), (np.eye(3), "shape"),
                                           (None, "None"), ("eye", "not a 4x4 matrix of numbers")])
def test_write_mesh_refuses_bad_affines(tmp_path, affine, words):
    pytest.importorskip("skimage")
    from lsdebm.review.meshfile import write_mesh

    with pytest.raises(InputError, match=f"affine.*{words}"):
        write_mesh(tmp_path / "a.stl", M, affine)
    assert list(tmp_path.iterdir()) == []


def test_write_mesh_refuses_a_level_that_is_no_number(tmp_path):
    pytest.importorskip("skimage")
    from lsdebm.review.meshfile import read_stl, write_mesh

    with pytest.raises(InputError, match="level='0.5'.*number"):
        write_mesh(tmp_path / "a.stl", M.astype(float), np.eye(4), level="0.5")
    assert list(tmp_path.iterdir()) == []
    assert np.isfinite(read_stl(write_mesh(tmp_path / "b.stl", M.astype(float), np.eye(4), level=0.5))).all()


# 4. write_volume: faithful uint64, no empty volume, clear errors and no file for bad arguments
def test_write_volume_keeps_uint64_labels_beyond_int64(tmp_path):
    data = M.astype(np.uint64) * np.uint64(2**63)
    back = read_volume(write_volume(tmp_path / "u.nii", data, np.eye(4))).data
    assert back.min() == 0 and int(back.max()) == 2**63
    np.testing.assert_array_equal(back, data)


@pytest.mark.parametrize("args, kwargs, words", [
    ((np.zeros((0, 4, 4)), np.eye(4)), {}, "non-empty 3D"),
    ((M, "eye"), {}, "affine 'eye' is not a 4x4 matrix of numbers"),
    ((M, np.eye(4)), {"header": {}}, "header is a dict"),
    ((M.astype(np.longdouble), np.eye(4)), {}, "float128|at most 64-bit"),
])
def test_write_volume_refuses_bad_arguments_and_writes_nothing(tmp_path, args, kwargs, words):
    if args[0].dtype == np.longdouble and np.dtype(np.longdouble).itemsize == 8:
        pytest.skip("long double is float64 on this platform")
    with pytest.raises(InputError, match=words):
        write_volume(tmp_path / "v.nii.gz", *args, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_write_volume_with_swapped_arguments_names_the_order(tmp_path):
    with pytest.raises(InputError, match=r"expected a file path .*got ndarray.*write_volume\(path, data, affine\)"):
        write_volume(M, tmp_path / "v.nii", np.eye(4))
    assert list(tmp_path.iterdir()) == []


# 5. arguments that are no path
@pytest.mark.parametrize("value, got", [(nib.Nifti1Image(M, np.eye(4)), "Nifti1Image"), (M, "ndarray"),
                                        (None, "NoneType"), (b"x.nii", "bytes")])
def test_read_volume_refuses_arguments_that_are_no_path(value, got):
    with pytest.raises(InputError, match=rf"expected a file path \(str or os.PathLike\), got {got}"):
        read_volume(value)


def test_load_checkpoint_and_load_real_masks_refuse_arguments_that_are_no_path():
    with pytest.raises(InputError, match=r"checkpoint: expected a file path .*got NoneType"):
        load_checkpoint(None)
    with pytest.raises(InputError, match=r"source: expected a file path .*got int"):
        load_real_masks(3)


# 6. make_vertebra's arguments
@pytest.mark.parametrize("kwargs, words", [
    ({"seed": -1}, "seed=-1"), ({"seed": None}, "seed=None"), ({"seed": "a"}, "seed='a'"),
    ({"size": None}, "size=None"), ({"size": (64, 64, 32)}, r"size=\(64, 64, 32\)"), ({"size": 8.5}, "size=8.5"),
    ({"spacing": None}, "spacing=None"), ({"spacing": (1, 1, 2)}, r"spacing=\(1, 1, 2\)"),
    ({"spacing": "2"}, "spacing='2'"), ({"spacing": np.inf}, "spacing=inf"),
    ({"spacing": 60.0}, "no voxel of the 16\\^3 grid"),
])
def test_make_vertebra_refuses_bad_arguments(kwargs, words):
    args = {"level": "L3", "seed": 0, "size": 16, "spacing": 8.0, **kwargs}
    with pytest.raises(InputError, match=words):
        make_vertebra(**args)


def test_make_vertebra_takes_numpy_numbers():
    a = make_vertebra("L3", np.int64(0), np.int64(16), np.float32(8.0))
    assert a.mask.any() and np.array_equal(a.mask, make_vertebra("L3", 0, 16, 8.0).mask)
    with pytest.raises(InputError, match="seed"):
        subject_params("L3", -1)


# 7. load_real_masks(dropped=...), hd95 edge cases, torch tensors, ragged lists
def test_load_real_masks_refuses_a_dropped_it_cannot_append_to():
    with pytest.raises(InputError, match=r"dropped=\(\): expected a list"):
        load_real_masks(dropped=())


def test_hd95_refuses_single_values_and_overflowing_spacing():
    with pytest.raises(InputError, match="single value"):
        hd95(np.array(1), np.array(1), spacing=1.0)
    with pytest.raises(InputError, match="larger than"):
        hd95(M, np.roll(M, 1, 0), spacing=1e308)


def test_metrics_take_torch_tensors_that_require_grad():
    pred = torch.tensor(M, dtype=torch.float32, requires_grad=True)
    assert dice(pred, M) == 1.0
    assert compute_metrics(pred, M)["dsc"] == 1.0


def test_dice_refuses_a_ragged_list():
    with pytest.raises(InputError, match="prediction is not a rectangular array"):
        dice([[1, 0], [1]], [[1, 0], [1, 1]])
