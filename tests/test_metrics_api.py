"""The metrics API refuses bad masks and spacing, offers both ASSD definitions, and the CLI
refuses a --label that the reference does not hold (a prediction without it scores as empty)."""
import json

import nibabel as nib
import numpy as np
import pytest

from lsdebm.cli.main import main
from lsdebm.errors import InputError
from lsdebm.evaluation.metrics import assd, compute_metrics, dice, hd95


def _blob():
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[1:4, 1:4, 1:4] = 1
    return mask


@pytest.mark.parametrize("bad, fragment", [
    (np.where(_blob() > 0, np.nan, 0.0), "27 NaN and 0 infinite"),
    (np.where(_blob() > 0, np.inf, 0.0), "0 NaN and 27 infinite"),
    (-_blob().astype(np.int16), r"negative values \(minimum -1\)"),
    (np.where(_blob() > 0, -0.5, 0.0), r"negative values \(minimum -0.5\)"),
    (_blob().astype(complex), "type complex128"),
])
def test_bad_masks_are_refused_by_every_entry_point(bad, fragment):
    good = _blob()
    for call in (lambda: dice(bad, good), lambda: hd95(good, bad), lambda: assd(bad, good),
                 lambda: compute_metrics(good, bad)):
        with pytest.raises(InputError, match=fragment) as info:
            call()
        assert "\n" not in str(info.value) and "expected" in str(info.value)
    with pytest.raises(InputError, match="^prediction "):
        dice(bad, good)
    with pytest.raises(InputError, match="^reference "):
        dice(good, bad)


@pytest.mark.parametrize("spacing, fragment", [
    ((0, 1, 1), "zero, negative or non-finite"),
    ((1, -1, 1), "zero, negative or non-finite"),
    ((1, np.nan, 1), "zero, negative or non-finite"),
    (0.0, "zero, negative or non-finite"),
    ((1, 1), "has 2 values"),
    ((1, 1, 1, 1), "has 4 values"),
    ("1mm", "not numeric"),
])
def test_bad_spacing_is_refused(spacing, fragment):
    pred, gt = _blob(), np.roll(_blob(), 1, axis=0)
    for call in (hd95, assd, compute_metrics):
        with pytest.raises(InputError, match=fragment) as info:
            call(pred, gt, spacing)
        assert "expected 3 positive finite numbers in mm" in str(info.value)
    with pytest.raises(InputError):  # refused even where no distance is needed (both empty)
        hd95(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), (0, 1, 1))


def test_valid_inputs_keep_working():
    labels = _blob().astype(np.int32) * 3  # a label map: any positive label is foreground
    probs = _blob() * 0.7  # finite real values, nonzero = foreground
    assert dice(labels, _blob()) == 1.0 and dice(probs, _blob().astype(bool)) == 1.0
    shifted = np.roll(_blob(), 1, axis=2)
    assert hd95(shifted, _blob(), 2.0) == hd95(shifted, _blob(), (2.0, 2.0, 2.0)) == pytest.approx(2.0)
    assert compute_metrics(shifted, _blob(), [1, 1, 1])["dsc"] == pytest.approx(2 / 3)
    square = np.zeros((8, 8), bool)
    square[2:6, 2:6] = True  # 2D with the default spacing: was "spacing has 3 values ... for a 2D mask"
    assert hd95(np.roll(square, 1, axis=0), square) == assd(square, square) + 1.0 == compute_metrics(
        np.roll(square, 1, axis=0), square)["hd95"] == pytest.approx(1.0)


def test_assd_both_definitions_hand_computed():
    # One row of voxels: every foreground voxel is a surface voxel.
    gt = np.zeros((1, 1, 10), np.uint8)
    pred = np.zeros_like(gt)
    gt[0, 0, 0:4] = 1  # surface {0, 1, 2, 3}
    pred[0, 0, 6] = 1  # surface {6}
    # pred -> gt: |6-3| = 3 (mean 3); gt -> pred: 6, 5, 4, 3 (mean 4.5); 2 mm along the row.
    spacing = (1.0, 1.0, 2.0)
    assert assd(pred, gt, spacing) == pytest.approx(2 * (3 + 4.5) / 2)  # 7.5
    assert assd(pred, gt, spacing, method="symmetric_mean") == pytest.approx(7.5)
    assert assd(pred, gt, spacing, method="pooled") == pytest.approx(2 * (3 + 6 + 5 + 4 + 3) / 5)  # 8.4
    assert compute_metrics(pred, gt, spacing)["assd"] == pytest.approx(7.5)
    assert compute_metrics(pred, gt, spacing, assd_method="pooled")["assd"] == pytest.approx(8.4)
    # Equal surfaces sizes in both directions make the two definitions agree.
    assert assd(gt, np.roll(gt, 1), method="pooled") == pytest.approx(assd(gt, np.roll(gt, 1)))
    with pytest.raises(InputError, match="'symmetric_mean' or 'pooled'; got 'mean'"):
        assd(pred, gt, method="mean")
    with pytest.raises(InputError, match="'symmetric_mean' or 'pooled'"):
        compute_metrics(pred, gt, assd_method="medpy")


def _save(path, data):
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4)), str(path))
    return str(path)


def test_cli_label_absent_is_an_error(tmp_path, capsys):
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[1:3, 1:4, 1:4] = 20
    labels[4:7, 1:4, 1:4] = 21
    only_20 = np.where(labels == 20, 20, 0).astype(np.uint8)
    full, part = _save(tmp_path / "full.nii.gz", labels), _save(tmp_path / "part.nii.gz", only_20)
    assert main(["metrics", full, full, "--label", "21", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dsc"] == 1.0
    assert main(["metrics", full, full, "--label", "22"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"lsdebm: error: {full}: label 22 not found; labels present: 20, 21"
    # absent from the prediction only: a method that lost the structure scores DSC 0, with a warning
    assert main(["metrics", part, full, "--label", "21", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["dsc"] == 0.0
    assert f"{part}: label 21 not found; scored as an empty prediction" in captured.err
    assert main(["metrics", full, part, "--label", "21"]) == 2  # absent from the reference: nothing to score
    assert capsys.readouterr().err.strip().endswith(f"{part}: label 21 not found; labels present: 20")
    empty = _save(tmp_path / "empty.nii.gz", np.zeros((8, 8, 8), np.uint8))
    assert main(["metrics", full, empty, "--label", "20"]) == 2
    assert "labels present: none (the volume is all zero)" in capsys.readouterr().err


def test_cli_empty_reference_or_label_0_is_an_error(tmp_path, capsys):
    """Without --label, an all-zero reference was scored silently (two empty files: DSC 1.0; an empty
    reference: DSC 0 and HD95 the grid's diagonal), and --label 0 scored the backgrounds."""
    cube = np.zeros((8, 8, 8), np.uint8)
    cube[2:6, 2:6, 2:6] = 1
    full, empty = _save(tmp_path / "cube.nii.gz", cube), _save(tmp_path / "empty.nii.gz", np.zeros_like(cube))
    for pred in (full, empty):
        assert main(["metrics", pred, empty]) == 2
        assert capsys.readouterr().err.strip() == (f"lsdebm: error: {empty}: the reference has no foreground voxels "
                                                   "(all zero); nothing to score against")
    assert main(["metrics", full, full, "--label", "0"]) == 2
    assert "--label 0 is the background" in capsys.readouterr().err
    assert main(["metrics", empty, full, "--json"]) == 0  # an empty prediction scores, with a warning
    captured = capsys.readouterr()
    assert json.loads(captured.out)["dsc"] == 0.0
    assert f"{empty}: no foreground voxels; scored as an empty prediction" in captured.err


def test_cli_refuses_negative_labels_as_the_api_does(tmp_path, capsys):
    """The command counted negative voxel values as foreground, where compute_metrics refuses them."""
    cube = np.zeros((8, 8, 8), np.int16)
    cube[2:6, 2:6, 2:6] = 1
    odd = cube.copy()
    odd[0, 0, 0] = -3
    good, bad = _save(tmp_path / "cube.nii.gz", cube), _save(tmp_path / "odd.nii.gz", odd)
    for pred, gt in ((bad, good), (good, bad)):
        assert main(["metrics", pred, gt]) == 2
        assert capsys.readouterr().err.strip() == (f"lsdebm: error: {bad} has negative values (minimum -3); expected a "
                                                   "binary mask or a label map with non-negative labels")


def test_the_python_api_refuses_bad_arguments_in_one_line(tiny_ckpts):
    """They raised IndexError / TypeError / RuntimeError from deep inside numpy and the pipeline."""
    import lsdebm
    from lsdebm.errors import InputError
    from lsdebm.runtime.loading import load_models

    models = load_models(checkpoint=str(tiny_ckpts["vae"]), reconnet=False)
    data = np.zeros((16, 16, 16), np.uint8)
    data[4:12, 4:12, 4:12] = 22
    for kwargs, fragment in ((dict(affine=np.eye(3)), "expected 4x4"),
                             (dict(affine=np.diag([8.0, 8.0, 8.0, 1.0]), labels="L3"), "expected label ids"),
                             (dict(affine=np.diag([8.0, 8.0, 8.0, 1.0]), out_grid=((10, 10), np.eye(4))),
                              "expected three positive sizes")):
        with pytest.raises(InputError, match=fragment):
            lsdebm.reconstruct(data, models=models, **kwargs)
    result = lsdebm.reconstruct(data, np.diag([8.0, 8.0, 8.0, 1.0]), models=models, labels=22)  # one id
    assert result.labels == [22]
    ckpt = lsdebm.load_checkpoint(str(tiny_ckpts["lsdebm"]))
    rec = lsdebm.record(data, ckpt, np.diag([8.0, 8.0, 8.0, 1.0]), label=22)
    with pytest.raises(InputError, match="k=999"):
        lsdebm.decode_frame(ckpt, rec.trajectory, frame=-1, k=999)
    assert lsdebm.decode_frame(ckpt, rec.trajectory, frame=-1, k=-1).shape == (16, 16, 16)
