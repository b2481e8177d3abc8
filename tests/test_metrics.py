import time

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, normalized_mutual_info_score

from lsdebm.data.phantoms import make_vertebra
from lsdebm.data.thickslice import ThickSliceParams, simulate_thick_slice
from lsdebm.evaluation.metrics import (
    METRIC_NAMES,
    assd,
    cohen_kappa,
    compute_metrics,
    confusion,
    dice,
    hd95,
    nmi,
    sensitivity,
    specificity,
    volumetric_similarity,
)


def _small_pair():
    gt = np.zeros((1, 2, 5), np.uint8)
    pred = np.zeros_like(gt)
    gt[0, 0, :4] = 1  # 4 reference voxels
    pred[0, 0, 1:4] = 1  # 3 TP
    pred[0, 1, 0] = 1  # 1 FP; FN = 1, TN = 10 - 5 = 5
    return pred, gt


def test_hand_computed_case():
    pred, gt = _small_pair()
    assert confusion(pred, gt) == (3, 1, 1, 5)
    assert dice(pred, gt) == pytest.approx(6 / 8)
    assert volumetric_similarity(pred, gt) == pytest.approx(1.0)
    assert sensitivity(pred, gt) == pytest.approx(3 / 4)
    assert specificity(pred, gt) == pytest.approx(5 / 6)
    p_o, p_e = 8 / 10, (4 * 4 + 6 * 6) / 100
    assert cohen_kappa(pred, gt) == pytest.approx((p_o - p_e) / (1 - p_e))
    compat = compute_metrics(pred, gt, reference_compat=True)
    assert compat["sen"] == pytest.approx(3 / 4)  # precision TP/(TP+FP)
    assert compat["spec"] == pytest.approx(5 / 6)  # NPV TN/(TN+FN)


def test_vs_and_swapped_columns_differ():
    gt = np.zeros((4, 4, 4), np.uint8)
    gt[:2] = 1  # 32 voxels
    pred = np.zeros_like(gt)
    pred[:1] = 1  # 16 voxels, all TP
    assert volumetric_similarity(pred, gt) == pytest.approx(1 - 16 / 48)
    compat = compute_metrics(pred, gt, reference_compat=True)
    assert compat["sen"] == pytest.approx(1.0) and sensitivity(pred, gt) == pytest.approx(0.5)
    assert compat["spec"] == pytest.approx(32 / 48) and specificity(pred, gt) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_nmi_and_kappa_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    gt = (rng.random((6, 7, 8)) < 0.3).astype(np.uint8)
    pred = np.where(rng.random(gt.shape) < 0.2, 1 - gt, gt)
    flat_p, flat_g = pred.ravel(), gt.ravel()
    assert nmi(pred, gt) == pytest.approx(normalized_mutual_info_score(flat_g, flat_p))
    assert nmi(pred, gt, "geometric") == pytest.approx(
        normalized_mutual_info_score(flat_g, flat_p, average_method="geometric"))
    assert cohen_kappa(pred, gt) == pytest.approx(cohen_kappa_score(flat_g, flat_p))


def test_distances_hand_computed():
    gt = np.zeros((1, 1, 20), np.uint8)
    pred = np.zeros_like(gt)
    gt[0, 0, 5] = 1
    pred[0, 0, 8] = 1
    assert hd95(pred, gt, spacing=(1, 1, 2.0)) == pytest.approx(6.0)
    assert assd(pred, gt, spacing=(1, 1, 2.0)) == pytest.approx(6.0)
    assert hd95(gt, gt) == 0.0


def test_empty_masks_have_defined_values():
    empty = np.zeros((4, 5, 6), np.uint8)
    full = empty.copy()
    full[1:3, 1:3, 1:3] = 1
    both = compute_metrics(empty, empty)
    assert both["dsc"] == 1.0 and both["hd95"] == 0.0 and both["ck"] == 1.0
    one = compute_metrics(empty, full, spacing=(2, 2, 2))
    assert one["dsc"] == 0.0 and one["hd95"] == pytest.approx(2 * np.sqrt(16 + 25 + 36))
    for result in (both, one, compute_metrics(full, empty, reference_compat=True)):
        assert set(result) == set(METRIC_NAMES)
        assert all(np.isfinite(v) for v in result.values())


def test_shape_mismatch():
    from lsdebm.errors import InputError

    with pytest.raises(InputError, match="shapes differ"):
        dice(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))


def test_speed_128(capsys):
    phantom = make_vertebra("L3", 0, 128, 1.0)
    lq = simulate_thick_slice(phantom.mask, 1.0, ThickSliceParams(), np.random.default_rng(0))
    start = time.perf_counter()
    result = compute_metrics(lq, phantom.mask)
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f"\nall metrics on a 128^3 pair: {elapsed * 1e3:.0f} ms; DSC {result['dsc']:.3f}")
    assert 0.5 < result["dsc"] < 1.0
