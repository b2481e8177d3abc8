"""`lsdebm evaluate --real`: real masks degraded by the thick-slice simulator, on one tiny val mask."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from lsdebm.cli.main import main
from lsdebm.data.real import bundled_manifest, level_from_name, load_real_masks, slab_axis
from lsdebm.errors import InputError
from lsdebm.evaluation.metrics import dice
from lsdebm.evaluation.real import (
    REAL_SIMULATOR,
    evaluate_real,
    predict,
    real_bars,
    real_cases,
    row_models,
    summarize_real,
)
from lsdebm.evaluation.rows import select_rows
from lsdebm.runtime.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

MASK = "verse/L3_verse009.nii.gz"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """A manifest of one bundled val mask (L3 of verse009)."""
    root = tmp_path_factory.mktemp("real")
    shutil.copy(bundled_manifest().parent / MASK, root / "L3_verse009.nii.gz")
    (root / "manifest.csv").write_text("file,level,subject,complete,split\n"
                                       "L3_verse009.nii.gz,L3,verse009,yes,val\n")
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def cases(manifest):
    return real_cases(manifest, split="val", planes=("sagittal",), thicknesses=(5.0,), forms=("truth", "native"),
                      levels=("L3",))


def test_one_case_per_mask_plane_thickness_form(cases):
    assert [(c.mask, c.plane, c.thickness, c.form) for c in cases] == \
        [("L3_verse009", "sagittal", 5.0, "truth"), ("L3_verse009", "sagittal", 5.0, "native")]
    truth, native = cases
    assert truth.params.gap == REAL_SIMULATOR["gap"] and 0.0 <= truth.params.offset < 5.0
    assert truth.lq.shape == truth.truth.shape and np.allclose(truth.affine, truth.truth_affine)
    assert np.allclose(np.linalg.norm(truth.truth_affine[:3, :3], axis=0), 1.0)


def test_native_form_is_coarse_along_the_slab_axis_and_scored_on_truth_grid(cases):
    truth, native = cases
    axis = slab_axis(native.truth_affine, "sagittal")
    spacing = np.linalg.norm(native.affine[:3, :3], axis=0)
    assert spacing[axis] == pytest.approx(5.0)
    assert np.allclose(np.delete(spacing, axis), 1.0)
    assert abs(native.lq.shape[axis] - native.truth.shape[axis] / 5.0) <= 1
    raw = predict(native, None)
    assert raw.shape == native.truth.shape
    assert dice(raw, truth.lq) == pytest.approx(1.0)  # the native slabs are the staircase's samples


def test_original_form_is_scored_on_the_masks_own_grid_and_improved_there(manifest):
    """VerSe's masks live on 1 x 1 x 2 mm: thick slices resampled onto that grid must still be found and refined."""
    from lsdebm.data.real import load_real_masks
    from lsdebm.runtime.loading import load_models

    (case,) = real_cases(manifest, split="val", planes=("axial",), thicknesses=(5.0,), forms=("original",),
                         levels=("L3",))
    (mask,) = load_real_masks(manifest, split="val")
    spacing = np.linalg.norm(case.truth_affine[:3, :3], axis=0)
    assert np.allclose(spacing, mask.spacing) and sorted(np.round(spacing, 3)) == [1.0, 1.0, 2.0]
    assert case.truth.sum() == (mask.mask != 0).sum()  # the mask itself, padded
    assert case.lq.shape == case.truth.shape and np.allclose(case.affine, case.truth_affine)
    raw = dice(predict(case, None), case.truth)
    assert 0.8 < raw < 0.95
    assert dice(predict(case, load_models("reconnet")), case.truth) > raw + 0.01  # was raw exactly (2 mm "slabs")


def test_evaluate_real_raw_and_reconnet(cases):
    rows = select_rows(["raw", "reconnet"])
    result = evaluate_real(cases, row_models(rows, {"reconnet": load_checkpoint("reconnet-default")}), rows)
    assert [(r["form"], r["method"]) for r in result.cases] == \
        [("truth", "raw"), ("truth", "reconnet"), ("native", "raw"), ("native", "reconnet")]
    for record in result.cases:
        if record["method"] == "raw":
            assert 0.7 < record["dsc"] < 1.0
        assert 0.0 < record["dsc"] <= 1.0 and record["seconds"] >= 0.0
    summary = summarize_real(result)
    assert summary["overall"]["raw"]["dsc"]["n"] == 2
    assert set(summary["by_subject"]) == {"verse009"} and "reconnet" in summary["by_subject"]["verse009"]
    assert set(summary["by_thickness"]) == {"5"} and set(summary["by_form"]) == {"truth", "native"}
    paired = summary["paired_vs_raw"]["reconnet"]
    assert paired["n"] == 2 and paired["better"] + paired["worse"] <= 2
    bars = {b["bar"]: b["holds"] for b in summary["bars"]}
    assert all(v is None for k, v in bars.items() if "lsdebm" in k)  # no ReconNet+LSD-EBM row
    assert bars["reconnet mean DSC >= raw mean DSC + 0.03"] is not None  # the default (ReconNet) is judged


def test_real_bars():
    overall = {"raw": {"dsc": {"mean": 0.85}, "hd95": {"mean": 3.0}},
               "reconnet": {"dsc": {"mean": 0.88}, "hd95": {"mean": 2.5}},
               "reconnet+lsdebm": {"dsc": {"mean": 0.89}, "hd95": {"mean": 2.5}}}
    paired = {"reconnet+lsdebm": {"n": 20, "worse": 3}, "reconnet": {"n": 20, "worse": 1}}
    # the default (ReconNet): +0.03 yes, HD95 yes, worse on 5 %; then ReconNet+LSD-EBM; then "earns its place"
    assert [b["holds"] for b in real_bars(overall, paired)] == [True, True, True, True, True, False, True]


@pytest.mark.parametrize("option, value", [("--planes", "sagital"), ("--thicknesses", "12"), ("--split", ""),
                                           ("--forms", "coarse"), ("--split", "nosuchsplit"),
                                           # the same cases twice (they were scored and counted twice, exit 0)
                                           ("--thicknesses", "5,5.0"), ("--planes", "sagittal,sagittal"),
                                           ("--forms", "truth,truth"),
                                           ("--seed", "-1"), ("--step-size", "nan"), ("--consistency-weight", "nan")])
def test_bad_options_refused_before_any_work(tmp_path, manifest, capsys, option, value):
    out = tmp_path / "out"
    assert main(["evaluate", "--real", str(manifest), "--out", str(out), option, value, "--methods", "raw"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsdebm: error:")
    assert not out.exists()


@pytest.mark.parametrize("kwargs", [{"planes": ("sagital",)}, {"thicknesses": (0.5,)}, {"forms": ("coarse",)},
                                    {"split": ""}, {"split": "train"}])
def test_real_cases_refuses_bad_protocol(manifest, kwargs):
    with pytest.raises(InputError):
        real_cases(manifest, **kwargs)


def test_real_only_options_need_real(tmp_path, capsys):
    assert main(["evaluate", "--out", str(tmp_path / "o"), "--planes", "axial"]) == 2
    assert "--real" in capsys.readouterr().err


def test_cli_writes_the_three_files(tmp_path, manifest, capsys):
    out = tmp_path / "real"
    argv = ["evaluate", "--real", str(manifest), "--out", str(out), "--planes", "sagittal", "--thicknesses", "5",
            "--forms", "truth,native", "--methods", "raw,reconnet", "--device", "cpu", "--threads", "1"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["real_cases.csv", "real_report.md", "real_summary.json"]
    with open(out / "real_cases.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {"case", "subject", "level", "plane", "thickness", "form", "method", "seconds",
                               "dsc", "hd95"} <= set(rows[0])
    report = json.loads((out / "real_summary.json").read_text())
    assert report["meta"]["protocol"]["simulator"] == REAL_SIMULATOR and "verse009" in report["summary"]["by_subject"]
    md = (out / "real_report.md").read_text()
    for title in ("Raw LQ input", "ReconNet", "DSC per subject", "Paired against the raw input",
                  " ± ", "lsdebm evaluate --real", "Scored on the 1 mm truth grid;"):
        assert title in md
    capsys.readouterr()
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err


def test_sampler_options_no_chosen_row_reads_are_warned_about(tmp_path, manifest, capsys):
    """``--methods raw,reconnet --steps 3`` ran without a word that no row reads --steps (reconstruct warned)."""
    out = tmp_path / "unread"
    assert main(["evaluate", "--real", str(manifest), "--out", str(out), "--planes", "sagittal", "--thicknesses",
                 "5", "--forms", "truth", "--methods", "raw,reconnet", "--steps", "3", "--langevin-steps", "9",
                 "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert ("warning: --steps, --langevin-steps: not used by the chosen rows raw,reconnet (no sampling chain); "
            "ignored") in err


@pytest.mark.parametrize("option, value", [("--n", "5"), ("--batch-size", "0"), ("--timing-cases", "2"),
                                           ("--phantoms", "3"), ("--record-test-metrics", None)])
def test_phantom_only_options_are_refused_with_real(tmp_path, manifest, capsys, option, value):
    """--n, --batch-size and --timing-cases were accepted and ignored with --real (their defaults hid them)."""
    out = tmp_path / "out"
    extra = [option] if value is None else [option, value]
    assert main(["evaluate", "--real", str(manifest), "--out", str(out), "--methods", "raw", *extra]) == 2
    assert capsys.readouterr().err.strip() == (f"lsdebm: error: {option} applies to the phantom test set only; "
                                               "drop it or --real")
    assert not out.exists()


def test_the_report_says_where_the_original_form_is_scored(tmp_path, manifest):
    """It said "Scored on the 1 mm truth grid" for --forms original, which is scored on the mask's own grid."""
    out = tmp_path / "original"
    assert main(["evaluate", "--real", str(manifest), "--out", str(out), "--planes", "sagittal", "--thicknesses",
                 "5", "--forms", "original", "--methods", "raw", "--threads", "1"]) == 0
    assert "Scored on each mask's own grid;" in (out / "real_report.md").read_text()


def test_distances_are_scored_at_the_grid_spacing_the_case_lives_on(tmp_path, manifest):
    """HD95 and ASSD were computed at 1 mm on every grid: the original form's 1 x 1 x 2 mm grid of VerSe, too."""
    from lsdebm.evaluation.metrics import compute_metrics

    (case,) = real_cases(manifest, split="val", planes=("axial",), thicknesses=(5.0,), forms=("original",),
                         levels=("L3",))
    rows = select_rows(["raw"])
    (record,) = evaluate_real([case], row_models(rows, {}), rows).cases
    raw = predict(case, None)
    spacing = tuple(np.linalg.norm(case.truth_affine[:3, :3], axis=0))
    right, as_1mm = compute_metrics(raw, case.truth, spacing), compute_metrics(raw, case.truth, (1.0, 1.0, 1.0))
    assert record["hd95"] == pytest.approx(right["hd95"]) and record["assd"] == pytest.approx(right["assd"])
    assert record["assd"] != pytest.approx(as_1mm["assd"])  # the 2 mm axis counts


def test_a_truth_grid_of_another_spacing(tmp_path, manifest):
    """``--truth-spacing``: users' truths come on CT pixels or TotalSegmentator's 1.5 mm grid."""
    truth, native = real_cases(manifest, split="val", planes=("sagittal",), thicknesses=(5.0,),
                               forms=("truth", "native"), levels=("L3",), truth_spacing=1.5)
    assert np.allclose(np.linalg.norm(truth.truth_affine[:3, :3], axis=0), 1.5)
    axis = slab_axis(native.truth_affine, "sagittal")
    assert np.allclose(np.delete(np.linalg.norm(native.affine[:3, :3], axis=0), axis), 1.5)
    assert dice(predict(native, None), truth.lq) == pytest.approx(1.0)  # the native slabs are the staircase's
    for spacing, thickness, said in ((0.1, 5.0, "truth spacing 0.1 mm is outside 0.3-3 mm"),
                                     (float("nan"), 5.0, "truth spacing nan mm is outside"),
                                     (1.5, 1.0, "slice thickness 1 mm is thinner than the truth grid's 1.5 mm")):
        with pytest.raises(InputError, match=said):
            real_cases(manifest, split="val", thicknesses=(thickness,), truth_spacing=spacing)
    out = tmp_path / "coarse"
    assert main(["evaluate", "--real", str(manifest), "--out", str(out), "--planes", "axial", "--thicknesses", "5",
                 "--forms", "truth", "--methods", "raw", "--truth-spacing", "1.5", "--threads", "1"]) == 0
    md = (out / "real_report.md").read_text()
    assert "Scored on the 1.5 mm truth grid;" in md and "truth grid 1.5 mm" in md
    assert json.loads((out / "real_summary.json").read_text())["meta"]["protocol"]["truth_spacing"] == 1.5
    assert main(["evaluate", "--out", str(tmp_path / "phantoms"), "--truth-spacing", "1.5"]) == 2  # real only


def test_masks_of_one_file_name_in_several_folders_stay_apart(tmp_path):
    """TotalSegmentator's layout (s0001/segmentations/vertebrae_L3.nii.gz, s0002/...) named both masks
    vertebrae_L3: one case, one subject, each paired with the other's raw input."""
    root = tmp_path / "ts"
    for subject, mask in (("s0001", "verse/L3_verse009.nii.gz"), ("s0002", "verse/L4_verse009.nii.gz")):
        (root / subject / "segmentations").mkdir(parents=True)
        shutil.copy(bundled_manifest().parent / mask, root / subject / "segmentations" / "vertebrae_L3.nii.gz")
    shutil.copy(bundled_manifest().parent / "verse/L5_verse009.nii.gz", root / "L5_alone.nii.gz")
    masks = load_real_masks(root, split=None)
    assert sorted((m.name, m.subject) for m in masks) == [
        ("L5_alone", "L5_alone"), ("s0001/segmentations/vertebrae_L3", "s0001/segmentations/vertebrae_L3"),
        ("s0002/segmentations/vertebrae_L3", "s0002/segmentations/vertebrae_L3")]  # a unique stem stays as it was
    assert {m.level for m in masks} == {"L3", "L5"}
    cases = real_cases(root, split=None, planes=("axial",), thicknesses=(5.0,), levels=None)
    assert len({c.name for c in cases}) == 3
    (root / "manifest.csv").write_text("file,level\ns0001/segmentations/vertebrae_L3.nii.gz,L3\n"
                                       "s0002/segmentations/vertebrae_L3.nii.gz,L3\n")  # no subject column
    assert len({(m.name, m.subject) for m in load_real_masks(root / "manifest.csv", split=None)}) == 2


@pytest.mark.parametrize("stem, level", [("L3_verse009", "L3"), ("vertebrae_L3", "L3"), ("sub-01_l3_mask", "L3"),
                                         ("sub-01_T1w_T12", "T12"), ("case_T12_L1", ""), ("mask", ""),
                                         ("L3", "L3"), ("vertebrae_L3.seg", "L3"), ("sacrum", "")])
def test_level_from_name(stem, level):
    assert level_from_name(stem) == level


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory):
    """A user's folder: one name states L3 (TotalSegmentator style), one T5, one no level at all."""
    folder = tmp_path_factory.mktemp("plain")
    for name in ("vertebrae_L3.nii.gz", "vertebrae_T5.nii.gz", "subject_b.nii.gz"):
        shutil.copy(bundled_manifest().parent / MASK, folder / name)
    return folder


def test_level_filter_keeps_masks_of_unknown_level(plain_folder):
    kept = load_real_masks(plain_folder, levels=("L1", "L2", "L3", "L4", "L5"))
    assert sorted((m.name, m.level) for m in kept) == [("subject_b", ""), ("vertebrae_L3", "L3")]
    assert len(load_real_masks(plain_folder)) == 3


def test_cli_on_a_plain_folder_evaluates_its_masks_without_split_options(tmp_path, plain_folder, capsys):
    """No manifest, no 'val' split: every mask is evaluated (lumbar or unknown level by default)."""
    def masks(*extra):
        out = tmp_path / "o"
        argv = ["evaluate", "--real", str(plain_folder), "--out", str(out), "--overwrite", "--planes", "sagittal",
                "--thicknesses", "5", "--forms", "truth", "--methods", "raw", *extra]
        assert main(argv) == 0
        summary = json.loads((out / "real_summary.json").read_text())
        with open(out / "real_cases.csv") as handle:
            return sorted({r["mask"] for r in csv.DictReader(handle)}), summary["meta"]["test_set"]

    names, described = masks()
    assert names == ["subject_b", "vertebrae_L3"]
    assert "every mask" in described and "(1 of unknown level)" in described
    assert masks("--levels", "all")[0] == ["subject_b", "vertebrae_L3", "vertebrae_T5"]
    assert masks("--levels", "t5", "--split", "all")[0] == ["subject_b", "vertebrae_T5"]
    capsys.readouterr()
    assert main(["evaluate", "--real", str(plain_folder), "--out", str(tmp_path / "x"), "--levels", "L3,X9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--levels" in err[0] and "L1,L2,T12" in err[0] and not (tmp_path / "x").exists()


def test_a_label_map_gives_one_mask_per_vertebra_and_drops_those_cut_by_the_edge(tmp_path):
    """A VerSe-style spine map (L3 = 22 whole, L4 = 23 cut by the field of view) in a plain folder."""
    import nibabel as nib

    (m,) = load_real_masks(bundled_manifest(), split="val", levels=("L3",))[:1]
    pad = np.pad(m.mask, 12)
    spine = np.concatenate([pad * 22, pad[..., :pad.shape[2] // 2] * 23], axis=2)  # L4's half ends at the edge
    nib.save(nib.Nifti1Image(spine, m.affine), tmp_path / "spine_seg.nii.gz")
    (whole,) = load_real_masks(tmp_path)
    assert (whole.name, whole.level, whole.subject, whole.complete) == ("L3_spine_seg", "L3", "spine_seg", True)
    assert whole.mask.sum() == m.mask.sum()
    from scipy import ndimage

    tight = ndimage.find_objects(m.mask)[0]  # cut out of the map with a 4-voxel margin, its affine moved
    assert whole.mask.shape == tuple(b.stop - b.start + 8 for b in tight)
    start = np.array([b.start + 12 - 4 for b in tight], float)  # in the padded map
    assert np.allclose(whole.affine[:3, 3], np.asarray(m.affine)[:3, :3] @ start + np.asarray(m.affine)[:3, 3])
    both = load_real_masks(tmp_path, complete_only=False)
    assert [(x.name, x.complete) for x in both] == [("L3_spine_seg", True), ("L4_spine_seg", False)]
    assert load_real_masks(tmp_path, levels=("L4",), complete_only=False)[0].level == "L4"


def test_a_partial_volume_file_is_refused_by_name(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.full((8, 8, 8), 0.4, np.float32), np.eye(4)), tmp_path / "pv.nii.gz")
    with pytest.raises(InputError, match=r"pv\.nii\.gz: the volume holds non-integer values"):
        load_real_masks(tmp_path)


def test_a_label_map_without_vertebrae_is_refused_without_a_reconstruct_only_hint(tmp_path):
    import nibabel as nib

    data = np.zeros((40, 40, 40), np.uint8)
    data[2:5, 2:5, 2:5], data[10:13, 10:13, 10:13] = 1, 2  # two specks, far from a vertebra's size
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "specks.nii.gz")
    with pytest.raises(InputError, match=r"specks\.nii\.gz: no vertebra .* expected one vertebra per file") as err:
        load_real_masks(tmp_path)
    assert "--label" not in str(err.value)


def test_a_plain_folder_leaves_out_a_cut_vertebra_and_names_a_spine_before_any_work(tmp_path):
    """A vertebra cut in half by its volume's edge was evaluated as complete, and a whole spine in one label
    stopped `evaluate --real` after 12 of 18 cases with an unnamed error (training took it silently)."""
    from lsdebm.data.nifti import read_volume, write_volume

    whole = read_volume(bundled_manifest().parent / MASK)
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(bundled_manifest().parent / MASK, folder / "L3_tight.nii.gz")  # a tight crop: touches its box
    data = np.asarray(whole.data)
    half = data[:, :, : data.shape[2] // 2].copy()
    write_volume(folder / "L3_cut.nii.gz", half, whole.affine)
    assert [m.name for m in load_real_masks(folder)] == ["L3_tight"]
    spine = np.concatenate([data] * 6, axis=0)  # six vertebrae in one label: far above a vertebra's size
    write_volume(folder / "spine.nii.gz", spine, whole.affine)
    with pytest.raises(InputError, match=r"spine\.nii\.gz: no vertebra to refine"):
        load_real_masks(folder)


def test_cli_on_a_plain_folder_names_the_cut_masks_it_leaves_out_and_counts_no_subjects(tmp_path, manifest, capsys):
    """A plain folder's files are not subjects ("2 real masks of 2 subjects" was wrong), and a vertebra cut by the
    field of view was left out without a word."""
    from lsdebm.data.nifti import read_volume, write_volume
    from lsdebm.data.real import subjects_known

    whole = read_volume(bundled_manifest().parent / MASK)
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("L3_a.nii.gz", "L3_b.nii.gz"):
        shutil.copy(bundled_manifest().parent / MASK, folder / name)
    data = np.asarray(whole.data)
    write_volume(folder / "L3_cut.nii.gz", data[:, :, : data.shape[2] // 2].copy(), whole.affine)
    dropped = []
    assert [m.name for m in load_real_masks(folder, dropped=dropped)] == ["L3_a", "L3_b"] and dropped == ["L3_cut"]
    assert not subjects_known(folder) and subjects_known(manifest) and subjects_known(None)
    out = tmp_path / "o"
    assert main(["evaluate", "--real", str(folder), "--out", str(out), "--planes", "sagittal", "--thicknesses", "5",
                 "--forms", "truth", "--methods", "raw"]) == 0
    err = capsys.readouterr().err
    assert "left out 1 mask(s) cut by the field of view (incomplete vertebrae): L3_cut" in err
    described = json.loads((out / "real_summary.json").read_text())["meta"]["test_set"]
    assert described.startswith("2 real masks in 2 files (subjects not known: pass a manifest.csv with a subject")
    assert "subjects (" not in described
