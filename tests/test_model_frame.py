"""One model-grid rule (shape and voxel size) for the explorer, Compare, uncertainty and the evaluation."""
import numpy as np
import pytest

from lsdebm.data import frame
from lsdebm.data.phantoms import grid_affine


def _volume(tiny_pair):
    return tiny_pair[1]  # 16^3, the tiny model grid


@pytest.mark.parametrize("affine, on_grid", [
    (grid_affine(16, 8.0), True),                 # the model frame itself
    (np.diag([8.0, 8.0, 8.0, 1.0]), True),        # model shape and spacing in scanner axes: used as is
    (np.diag([8.0, 8.0, 4.0, 1.0]), False),       # model shape, another spacing: cropped
    (np.diag([7.0, 7.0, 7.0, 1.0]), False),
])
def test_on_model_grid_is_shape_and_spacing(affine, on_grid):
    assert frame.on_model_grid((16, 16, 16), affine, 16, 8.0) is on_grid
    assert not frame.on_model_grid((16, 16, 15), affine, 16, 8.0)


def test_explorer_compare_uncertainty_and_evaluation_share_the_rule():
    from lsdebm.evaluation import phantoms
    from lsdebm.explore import record
    from lsdebm.review import compare, uncertainty

    assert record.on_model_grid is frame.on_model_grid is phantoms.on_model_grid
    assert compare.to_model_grid is frame.to_model_grid is uncertainty.to_model_grid


@pytest.mark.parametrize("spacing", [8.0, 6.0])
def test_explorer_and_compare_crop_the_same_volumes(tiny_pair, spacing):
    from lsdebm.explore import prepare_input

    affine = np.diag([spacing, spacing, spacing, 1.0])
    x = _volume(tiny_pair)
    explored, explorer_info = prepare_input(x, affine, 16, 8.0)
    compared, compare_info = frame.to_model_grid(x, affine, 16, 8.0)
    assert (explorer_info is None) == (compare_info is None) == (spacing == 8.0)
    np.testing.assert_array_equal(explored, compared)


def test_evaluation_uses_the_rule(tiny_ckpts, monkeypatch):
    from lsdebm.data.phantom_set import generate_pairs
    from lsdebm.evaluation import phantoms
    from lsdebm.evaluation.rows import select_rows

    calls = []
    real = frame.on_model_grid
    monkeypatch.setattr(phantoms, "on_model_grid", lambda *a: calls.append(a) or real(*a))
    rows = select_rows(["raw", "reconnet"])
    models = phantoms.row_checkpoints(rows, tiny_ckpts["reconnet"].parent)
    phantoms.evaluate(generate_pairs(2, 5, 16, 8.0), models, rows, timing_cases=0)
    assert len(calls) == 2 and all(real(*a) for a in calls)


def test_resample_is_public_and_volume_maps_go_back(tiny_pair):
    x = _volume(tiny_pair).astype(np.float32)
    affine = np.diag([6.0, 6.0, 6.0, 1.0])
    crop, info = frame.to_model_grid(x, affine, 16, 8.0)
    back = frame.volume_to_input(crop.astype(np.float32), info)
    expected = frame.resample(crop.astype(np.float32), info.source_shape, info.source_affine, info.crop_affine, 1)
    np.testing.assert_array_equal(back, expected.astype(np.float32))
    assert frame.mask_to_input(crop, info).shape == x.shape


def test_one_part_regions_and_its_empty_rule():
    from lsdebm.errors import InputError
    from lsdebm.evaluation import phantoms
    from lsdebm.evaluation.parts import part_regions
    from lsdebm.review import roi

    assert phantoms.part_regions is roi.part_regions is part_regions
    with pytest.raises(InputError, match="no labelled voxel"):
        part_regions(np.zeros((3, 3, 3)))
    assert not part_regions(np.zeros((3, 3, 3)), allow_empty=True).any()


def _rotated(spacing, degrees, origin):
    from scipy.spatial.transform import Rotation

    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", degrees, degrees=True).as_matrix() * spacing
    affine[:3, 3] = origin
    return affine


@pytest.mark.parametrize("out_spacing,degrees", [(0.6, (0, 0, 0)), (1.5, (0, 0, 0)), (0.8, (14, -20, 9))])
def test_resample_box_is_resample_where_the_data_reaches(out_spacing, degrees):
    """Resampling only around a structure (nearest, its box grown by one voxel) or a crop (linear) gives the
    whole-grid result: the output step relies on it to skip the rest of a spine's label map."""
    rng = np.random.default_rng(3)
    mask = np.zeros((40, 36, 30), np.uint8)
    mask[12:25, 9:20, 6:22] = rng.random((13, 11, 16)) < 0.7
    in_affine = np.diag([1.0, 1.0, 2.0, 1.0])
    in_affine[:3, 3] = (-3.0, 4.0, 1.5)
    out_affine = _rotated(out_spacing, degrees, (-6.03, 1.07, -2.01))  # no sample exactly on an edge
    out_shape = tuple(int(np.ceil(n * s / out_spacing)) + 8 for n, s in zip(mask.shape, (1, 1, 2)))
    whole = frame.resample(mask, out_shape, out_affine, in_affine, order=0)
    assert whole.any()
    boxed = frame.resample_box(mask, out_shape, out_affine, in_affine, order=0, box=frame.bounding_box(mask, 1))
    np.testing.assert_array_equal(boxed, whole)
    probs = rng.random(mask.shape).astype(np.float32)
    np.testing.assert_allclose(frame.resample_box(probs, out_shape, out_affine, in_affine, order=1),
                               frame.resample(probs, out_shape, out_affine, in_affine, order=1), atol=1e-6)
    shrunk = frame.resample_box(mask, out_shape, out_affine, in_affine, order=0, box=frame.bounding_box(mask, 0))
    assert shrunk.sum() <= whole.sum()  # without the margin the box edge may lose voxels, never gain any


@pytest.mark.parametrize("values", ["binary", "fraction"])
def test_a_crop_reads_only_the_structures_box_and_gets_what_the_whole_volume_gives(values):
    from lsdebm.data.pose import pose_for

    rng = np.random.default_rng(5)
    volume = np.zeros((90, 80, 70), np.uint8)
    volume[30:52, 25:47, 20:38] = 3 * (rng.random((22, 22, 18)) < 0.8)
    volume[60:70, 10:20, 40:50] = 7  # another structure of the label map, left alone
    affine = np.diag([0.9, 0.9, 1.7, 1.0])
    affine[:3, 3] = (-40.0, -30.0, -50.0)
    crop, info = frame.crop_label(volume, affine, label=3, grid=16, frame="pose", values=values)
    pose = pose_for("pose", volume == 3, affine)  # on the whole volume
    np.testing.assert_allclose(info.centroid_mm, pose.centroid_mm, atol=1e-9)
    np.testing.assert_allclose(info.crop_affine, frame.frame_affine(pose, 16, 2.0), atol=1e-9)
    whole = (volume == 3).astype(np.float32)
    if values == "fraction":
        expected = frame.covered_fraction(whole, affine, info.crop_affine, 16)
    else:
        expected = frame.resample(whole, (16,) * 3, info.crop_affine, affine, order=1) >= 0.5
    assert crop.any()
    np.testing.assert_allclose(crop.astype(np.float32), expected.astype(np.float32), atol=1e-6)


def test_a_crop_given_its_structures_box_reads_only_that_box_and_gets_the_same_crop():
    """``crop_label(box=...)`` (the box from the label map's one-pass census) gives the crop and pose of the
    whole-volume computation, and reads nothing outside the box."""
    from lsdebm.data.label_census import label_boxes

    rng = np.random.default_rng(6)
    volume = np.zeros((90, 80, 70), np.uint8)
    volume[30:52, 25:47, 20:38] = 3 * (rng.random((22, 22, 18)) < 0.8)
    volume[60:70, 10:20, 40:50] = 7
    affine = np.diag([0.9, 0.9, 1.7, 1.0])
    crop, info = frame.crop_label(volume, affine, label=3, grid=16, frame="pose")
    box = label_boxes(volume, [3, 7])[3]
    read = frame.grown_box(box, 1, volume.shape)  # the box and the background voxel around it
    fenced = np.full_like(volume, 3)  # label 3 everywhere else: read, it would change the crop
    fenced[read] = volume[read]
    boxed, boxed_info = frame.crop_label(fenced, affine, label=3, grid=16, frame="pose", box=box)
    np.testing.assert_array_equal(boxed, crop)
    np.testing.assert_array_equal(boxed_info.crop_affine, info.crop_affine)
    assert (boxed_info.source_shape, boxed_info.centroid_mm, boxed_info.tilt_deg) == \
        (info.source_shape, info.centroid_mm, info.tilt_deg)


def test_a_boxed_volume_is_its_whole_volume():
    from lsdebm.data.boxes import BoxedVolume

    rng = np.random.default_rng(1)
    whole = np.zeros((12, 10, 8), np.float32)
    whole[3:7, 2:9, 1:5] = rng.random((4, 7, 4))
    boxed = BoxedVolume.around(whole, 1)
    assert boxed.box == ((slice(2, 8), slice(1, 10), slice(0, 6))) and boxed.values.shape == (6, 9, 6)
    np.testing.assert_array_equal(boxed.full(), whole)
    np.testing.assert_array_equal(boxed.mask(0.5), (whole >= 0.5).astype(np.uint8))
    empty = BoxedVolume.around(np.zeros((4, 4, 4)))
    assert empty.values.size == 0 and not empty.full().any() and empty.mask().shape == (4, 4, 4)


def test_a_boxed_read_is_the_whole_volumes_with_edge_voxels_repeated():
    """Points past the volume's edge read its edge voxel (clipped indices), as a whole-grid read does; points
    outside the box read background."""
    from lsdebm.data.boxes import BoxedVolume

    rng = np.random.default_rng(0)
    full = np.zeros((20, 16, 12), bool)
    full[3:20, 5:9, 0:7] = rng.random((17, 4, 7)) > 0.3  # touches the last slice of axis 0 and the first of axis 2
    boxed = BoxedVolume.around(full, 1)
    index = [rng.integers(-6, n + 6, size=shape) for n, shape in zip(full.shape, [(40, 1, 1), (1, 30, 1), (1, 1, 25)])]
    expected = full[tuple(np.clip(i, 0, n - 1) for i, n in zip(index, full.shape))]
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(boxed.at(index), expected)
