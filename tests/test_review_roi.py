import numpy as np
import pytest

from lsdebm.errors import InputError, LsdebmError
from lsdebm.evaluation.metrics import METRIC_NAMES, compute_metrics, confusion
from lsdebm.review.roi import box_from_points, box_mask, part_regions, region_metrics, review_metrics, reviewed_pair
from lsdebm.review.table import COLUMNS, to_text, write_csv

SPACING = (2.0, 1.0, 1.5)


def blobs(seed: int, shape=(20, 24, 22)):
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    return (field > 0.02).astype(np.uint8), (field > -0.02).astype(np.uint8)


def test_box_from_points_rectangle_on_one_slice_spans_the_axis():
    box = box_from_points([[5, 2.2, 3.0], [5, 7.8, 3.0], [5, 7.8, 9.0], [5, 2.2, 9.0]], (12, 10, 10))
    assert box == (slice(0, 12), slice(3, 8), slice(3, 10))


def test_box_from_points_two_slices_limit_depth_and_clip():
    box = box_from_points([[2, -5, 1], [6, 40, 4]], (10, 10, 10))
    assert box == (slice(2, 7), slice(0, 10), slice(1, 5))


@pytest.mark.parametrize("points", [[[20, 1, 1], [30, 4, 4]], [[1, 2], [3, 4]], np.zeros((0, 3))])
def test_box_from_points_rejects_bad_rois(points):
    with pytest.raises(InputError):
        box_from_points(points, (10, 10, 10))


def test_box_roi_metrics_equal_metrics_of_cropped_volumes():
    pred, ref = blobs(0)
    box = (slice(3, 15), slice(4, 20), slice(2, 17))
    got = region_metrics(pred, ref, SPACING, box)
    want = compute_metrics(pred[box], ref[box], SPACING)
    assert got == pytest.approx(want)
    assert got != pytest.approx(compute_metrics(pred, ref, SPACING))  # the ROI really restricts


def test_mask_roi_shaped_like_a_box_equals_the_box():
    pred, ref = blobs(1)
    box = (slice(2, 12), slice(5, 18), slice(0, 22))
    assert region_metrics(pred, ref, SPACING, box_mask(box, pred.shape)) == pytest.approx(
        region_metrics(pred, ref, SPACING, box))


def test_mask_roi_ignores_everything_outside_it():
    pred, ref = blobs(2)
    roi = np.zeros(pred.shape, bool)
    roi[4:14, 3:20, 5:18] = True
    roi[4:8, 3:8, 5:9] = False  # not a box
    pred2 = pred.copy()
    pred2[~roi] = 1 - pred2[~roi]  # scramble outside
    assert region_metrics(pred2, ref, SPACING, roi) == pytest.approx(region_metrics(pred, ref, SPACING, roi))
    c = confusion(pred[roi], ref[roi])
    assert region_metrics(pred, ref, SPACING, roi)["dsc"] == pytest.approx(2 * c.tp / (2 * c.tp + c.fp + c.fn))


def test_empty_rois_are_errors():
    pred, ref = blobs(3)
    with pytest.raises(LsdebmError, match="empty"):
        region_metrics(pred, ref, SPACING, np.zeros(pred.shape, bool))
    with pytest.raises(InputError, match="shape"):
        region_metrics(pred, ref, SPACING, np.ones((2, 2, 2), bool))


def test_part_regions_partition_the_grid_by_nearest_part():
    parts = np.zeros((1, 1, 10), np.uint8)
    parts[0, 0, 1], parts[0, 0, 8] = 1, 2
    assert part_regions(parts).ravel().tolist() == [1, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    with pytest.raises(InputError):
        part_regions(np.zeros((3, 3, 3)))


def test_per_part_confusions_add_up_to_the_whole(tiny_pair):
    hq, _, parts = tiny_pair
    pred = np.roll(hq, 1, axis=1)
    regions = part_regions(parts, 8.0)
    labels = [v for v in np.unique(parts) if v]
    total = np.sum([confusion(pred[regions == v], hq[regions == v]) for v in labels], axis=0)
    assert tuple(total) == tuple(confusion(pred, hq))
    assert confusion(pred, hq).fp > 0


def test_review_table_rows_and_text(tmp_path, tiny_pair):
    from lsdebm.data.phantoms import PART_LABELS

    hq, lq, parts = tiny_pair
    pred = np.roll(hq, 1, axis=2)
    rows = review_metrics(pred, hq, 8.0, parts=parts, roi=(slice(4, 12),) * 3)
    names = [r.region for r in rows]
    assert names[0] == "whole volume" and names[-1] == "ROI"
    assert set(names[1:-1]) <= set(PART_LABELS.values()) and len(names) > 3
    assert rows[0].metrics == pytest.approx(compute_metrics(pred, hq, 8.0))
    assert set(rows[1].metrics) == set(METRIC_NAMES)
    text = to_text(rows, "\t")
    assert text.splitlines()[0].split("\t") == list(COLUMNS)
    path = write_csv(tmp_path / "m.csv", rows)
    lines = path.read_text().splitlines()
    assert len(lines) == len(rows) + 1 and lines[1].startswith("whole volume,4096,")
    with pytest.raises(LsdebmError, match="exists"):
        write_csv(path, rows)


def test_reviewed_pair_scores_one_structure_of_a_label_map():
    """A spine's label map as reference: with a label, its voxels of that label against a one-structure
    prediction (or the same label of a label-map prediction); without one, one structure against a map of several
    is refused, and two maps of several are compared whole (a refined spine against its truth)."""
    spine = np.zeros((12, 10, 10), np.int16)
    spine[1:5, 2:8, 2:8], spine[7:11, 2:8, 2:8] = 22, 23
    recon = np.zeros(spine.shape, np.uint8)
    recon[1:6, 2:8, 2:8] = 1  # one vertebra, one slice too many
    p, r = reviewed_pair(recon, spine, 22)
    np.testing.assert_array_equal(p, recon != 0)
    np.testing.assert_array_equal(r, spine == 22)
    p, r = reviewed_pair(spine, spine, 23)  # a label map on both sides: the same label of each
    np.testing.assert_array_equal(p, spine == 23)
    np.testing.assert_array_equal(r, spine == 23)
    with pytest.raises(InputError, match=r"reference 'gt' holds 2 labels \(22, 23\); choose the structure to review"):
        reviewed_pair(recon, spine, None, "prediction 'p'", "reference 'gt'")
    with pytest.raises(InputError, match=r"prediction 'p' holds 2 labels"):
        reviewed_pair(spine, recon, None, "prediction 'p'", "reference 'gt'")
    p, r = reviewed_pair(spine, spine, None)
    np.testing.assert_array_equal(p, spine != 0)
    np.testing.assert_array_equal(r, spine != 0)
    with pytest.raises(InputError, match=r"reference 'gt' has no label 9; labels present: \[22, 23\]"):
        reviewed_pair(recon, spine, 9, "prediction 'p'", "reference 'gt'")
    prob = recon.astype(np.float32) * 0.7  # a probability image: thresholded at 0.5
    p, r = reviewed_pair(prob, (spine == 22).astype(np.float32), None)
    np.testing.assert_array_equal(p, recon != 0)
    np.testing.assert_array_equal(r, spine == 22)
