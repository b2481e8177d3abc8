"""The second thick-slice simulator (lsdebm.evaluation.second_simulator) and `evaluate --real --simulator second`."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lsdebm.cli.main import main
from lsdebm.data.acquisition import find_acquisition
from lsdebm.data.real import bundled_manifest, isotropic, load_real_masks, slab_axis
from lsdebm.errors import InputError
from lsdebm.evaluation.metrics import dice
from lsdebm.evaluation.real import predict, real_cases
from lsdebm.evaluation.second_simulator import SecondSimulator
from lsdebm.tasks.reconstruct import resample_labels

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def truth():
    m = {m.name: m for m in load_real_masks(split="val", levels=("L3",))}["L3_vhmale"]
    return isotropic(m.mask, m.affine, 1.0, 6.0)


@pytest.mark.parametrize("profile", ["box", "gauss"])
def test_nearest_resampling_makes_a_staircase_of_the_slab_thickness(truth, profile):
    mask, affine = truth
    axis = slab_axis(affine, "sagittal")
    lq, native, native_affine = SecondSimulator(profile=profile).degrade(mask, affine, axis, 5.0,
                                                                         np.random.default_rng(0))
    assert lq.shape == mask.shape and set(np.unique(lq)) <= {0, 1}
    acq = find_acquisition(lq, affine)
    assert acq is not None and acq.axis == axis and abs(acq.thickness_mm - 5.0) <= 0.3
    assert 0.85 < dice(lq, mask) < 0.97  # degraded, not destroyed
    # the native form holds one slice per slab at 5 mm and is the same observation
    assert np.isclose(np.linalg.norm(native_affine[:3, axis]), 5.0) and native.shape[axis] == mask.shape[axis] // 5
    assert dice(resample_labels(native, native_affine, mask.shape, affine), lq) > 0.99


def test_linear_resampling_hides_the_staircase_and_is_closer_to_the_truth(truth):
    mask, affine = truth
    axis = slab_axis(affine, "axial")
    rng = lambda: np.random.default_rng(3)  # noqa: E731 - the same jitter and offset for both
    nearest, _, _ = SecondSimulator().degrade(mask, affine, axis, 5.0, rng())
    linear, _, _ = SecondSimulator(resample="linear").degrade(mask, affine, axis, 5.0, rng())
    assert find_acquisition(linear, affine) is None
    assert dice(linear, mask) > dice(nearest, mask) + 0.02


def test_jitter_gap_blur_and_threshold_each_change_the_result(truth):
    mask, affine = truth
    base, *_ = SecondSimulator(jitter_mm=0.0).degrade(mask, affine, 0, 4.0, np.random.default_rng(1))
    for change in ({"jitter_mm": 1.0}, {"gap_mm": 1.0}, {"blur_mm": 1.5}, {"threshold": 0.7}):
        other, *_ = SecondSimulator(**{"jitter_mm": 0.0, **change}).degrade(mask, affine, 0, 4.0,
                                                                           np.random.default_rng(1))
        assert not np.array_equal(other, base), change
    thin, *_ = SecondSimulator(jitter_mm=0.0, threshold=0.7).degrade(mask, affine, 0, 4.0, np.random.default_rng(1))
    assert thin.sum() < base.sum()


@pytest.mark.parametrize("options, message", [(["profile=triangle"], "profile"), (["threshold=0.95"], "threshold"),
                                              (["speed=3"], "KEY=VALUE"), (["jitter_mm=lots"], "number"),
                                              (["gap_mm"], "KEY=VALUE")])
def test_bad_settings_are_refused_by_name(options, message):
    with pytest.raises(InputError, match=message):
        SecondSimulator.from_options(options)


def test_the_default_improves_second_simulator_cases_in_both_forms():
    """The bundled default on cases it never saw the like of: unseen subjects, another simulator."""
    from lsdebm.runtime.loading import load_models

    models = load_models("reconnet")
    sim = SecondSimulator(profile="gauss", jitter_mm=0.8)
    cases = real_cases(None, "val", ("sagittal", "axial"), (5.0,), seed=0, forms=("truth", "native"),
                       levels=("L2", "L4"), simulator=sim)
    gains = [dice(predict(c, models), c.truth) - dice(predict(c, None), c.truth) for c in cases]
    assert len(cases) == 16 and np.mean(gains) > 0.01 and min(gains) > -0.005


def test_cli_second_simulator_records_its_settings(tmp_path, capsys):
    root = tmp_path / "real"
    root.mkdir()
    shutil.copy(bundled_manifest().parent / "verse/L3_verse009.nii.gz", root / "L3_verse009.nii.gz")
    (root / "manifest.csv").write_text("file,level,subject,complete,split\nL3_verse009.nii.gz,L3,verse009,yes,val\n")
    out = tmp_path / "out"
    argv = ["evaluate", "--real", str(root / "manifest.csv"), "--out", str(out), "--planes", "axial", "--thicknesses",
            "5", "--forms", "truth", "--methods", "raw", "--simulator", "second", "--simulator-option",
            "profile=gauss", "--simulator-option", "resample=linear"]
    assert main(argv) == 0
    meta = json.loads((out / "real_summary.json").read_text())["meta"]
    assert meta["protocol"]["simulator"] == {**SecondSimulator(profile="gauss", resample="linear").as_dict()}
    capsys.readouterr()
    bad = ["evaluate", "--real", str(root / "manifest.csv"), "--out", str(tmp_path / "o2"), "--simulator-option",
           "profile=gauss"]
    assert main(bad) == 2 and "--simulator second" in capsys.readouterr().err
    assert main(["evaluate", "--out", str(tmp_path / "o3"), "--simulator", "second"]) == 2
    assert "--real" in capsys.readouterr().err and not (tmp_path / "o2").exists()
