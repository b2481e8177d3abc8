import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from lsdebm import __version__
from lsdebm.cli.main import main


def test_version_subprocess():
    out = subprocess.run([sys.executable, "-m", "lsdebm.cli.main", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    for name in ("phantoms", "metrics", "demo"):
        assert name in help_text


def test_phantoms_then_metrics(tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["phantoms", "--out", str(out), "--n", "3", "--size", "32", "--spacing", "4"]) == 0
    assert sorted(p.name for p in (out / "hq").iterdir()) == ["case0000_L1.nii.gz", "case0001_L2.nii.gz",
                                                              "case0002_L3.nii.gz"]
    assert (out / "manifest.csv").read_text().startswith("name,level,seed")
    capsys.readouterr()
    lq, hq = out / "lq" / "case0000_L1.nii.gz", out / "hq" / "case0000_L1.nii.gz"
    assert main(["metrics", str(lq), str(hq), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.3 < result["dsc"] < 1.0 and result["hd95"] >= 0
    assert main(["metrics", str(hq), str(hq), "--reference-compat"]) == 0
    assert "DSC  1.0000" in capsys.readouterr().out
    # Existing output is refused with a one-line user error, exit code 2.
    assert main(["phantoms", "--out", str(out), "--n", "3", "--size", "32", "--spacing", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lsdebm: error:") and "--overwrite" in err and "Traceback" not in err


def test_metrics_of_a_probability_map_threshold_it_at_one_half(tmp_path, capsys):
    """A --save-probs output scored as 'nonzero is foreground' gave DSC 0.16 for a 0.98 result, silently."""
    from lsdebm.data.nifti import write_volume

    truth = np.zeros((20, 20, 20), np.uint8)
    truth[5:15, 5:15, 5:15] = 1
    probs = np.where(truth > 0, 0.9, 1e-6).astype(np.float32)
    probs[5, 5:15, 5:15] = 0.4  # one face below one half: 90 of 1000 voxels missed
    paths = [write_volume(tmp_path / name, data, np.eye(4))
             for name, data in (("t.nii.gz", truth), ("p.nii.gz", probs), ("x.nii.gz", probs * 3))]
    assert main(["metrics", str(paths[1]), str(paths[0]), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["dsc"] == pytest.approx(2 * 900 / 1900)
    assert "holds probabilities (values between 0 and 1); scored as the mask where they are >= 0.5" in captured.err
    assert main(["metrics", str(paths[2]), str(paths[0])]) == 2
    err = capsys.readouterr().err.strip()
    assert "x.nii.gz holds non-integer values such as" in err and "probabilities in [0, 1]" in err


@pytest.mark.parametrize("extra, message", [
    (["--seed", "-1"], "--seed -1 must be >= 0 and < 2**63"),  # a numpy ValueError traceback
    (["--thickness", "nan"], "--thickness nan: expected a finite number"),  # an OverflowError traceback
    (["--blur", "inf"], "--blur inf: expected a finite number"),
    # the core's "ThickSliceParams.thickness=100.0: ..." worded with the option typed
    (["--thickness", "100"], "--thickness 100.0: expected a number of mm in [1.0, 10.0]"),
])
def test_phantoms_bad_seed_or_simulator_value_is_one_line(tmp_path, capsys, extra, message):
    out = tmp_path / "set"
    assert main(["phantoms", "--out", str(out), "--n", "1", "--size", "16", "--spacing", "8", *extra]) == 2
    assert capsys.readouterr().err.strip() == f"lsdebm: error: {message}"
    assert not out.exists()


def test_user_error_is_one_line(tmp_path, capsys):
    assert main(["metrics", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "a.nii.gz" in err


def test_metrics_on_two_grids_says_how_to_put_them_on_one(tmp_path, capsys):
    """A thick-slice input's default output grid is padded to whole slabs: it is not the 1 mm reference's."""
    mask = np.zeros((20, 20, 23), np.uint8)
    mask[5:15, 5:15, 5:18] = 1
    gt, pred, moved = tmp_path / "gt.nii.gz", tmp_path / "pred.nii.gz", tmp_path / "moved.nii.gz"
    nib.save(nib.Nifti1Image(mask, np.eye(4)), gt)
    nib.save(nib.Nifti1Image(np.pad(mask, [(0, 0), (0, 0), (0, 2)]), np.eye(4)), pred)
    nib.save(nib.Nifti1Image(mask, np.diag([1.0, 1.0, 2.0, 1.0])), moved)
    for path, problem in ((pred, "has shape (20, 20, 25) but"), (moved, "have different affines")):
        assert main(["metrics", str(path), str(gt)]) == 2
        err = capsys.readouterr().err.strip()
        assert problem in err and f"--like {gt}" in err and err.count("\n") == 0


def test_a_bad_option_value_is_named_as_the_option_typed(tmp_path, tiny_ckpts, capsys):
    """The core checks parameters by their Python names; the command line names the option instead."""
    demo = ["demo", "--headless", "--checkpoint", str(tiny_ckpts["lsdebm"]), "--out", str(tmp_path / "d")]
    for option, value, said in (("--langevin-steps", "0", "--langevin-steps 0 must be >= 1"),
                                ("--K", "0", "--langevin-steps 0 must be >= 1"),
                                ("--repeats", "0", "--repeats 0 must be >= 1"),
                                ("--step-size", "-1", "--step-size -1.0 must be > 0")):
        assert main([*demo, option, value]) == 2
        assert capsys.readouterr().err.strip() == f"lsdebm: error: {said}"  # refused before the progress bar
    train = ["train", "--model", "vae", "--phantoms", "4", "--preset", "tiny", "--out", str(tmp_path / "t.safetensors")]
    assert main([*train, "--epochs", "0"]) == 2
    assert capsys.readouterr().err.strip() == "lsdebm: error: --epochs 0 must be > 0"
    for item, said in (("train.epochs=0", "must be > 0"), ("loss.kl_weight=nan", "must be a finite number"),
                       ("train.lr=[1]", "must be a finite number")):  # named as typed, not by the config field
        assert main([*train, "--set", item]) == 2
        assert capsys.readouterr().err.strip() == f"lsdebm: error: --set {item} {said}"
    real = [*train[:3], "--data", "bundled", *train[5:]]
    for option, value, said in (("--real-fraction", "1.5", "--real-fraction 1.5 must be in [0, 1]"),  # each named
                                ("--redraw", "-0.1", "--redraw -0.1 must be in [0, 1]"),  # alone (all three were
                                ("--pairs", "0", "--pairs 0 must be >= 1")):  # in one message, whichever was wrong)
        assert main([*real, option, value]) == 2
        assert capsys.readouterr().err.strip() == f"lsdebm: error: {said}"
    assert main([*train, "--real-fraction", "0.3", "--pairs", "50"]) == 2  # was ignored without a word
    assert capsys.readouterr().err.strip() == (
        "lsdebm: error: --real-fraction, --pairs: real-data options; they apply to real masks (--data FOLDER, a "
        "manifest.csv or 'bundled'), and --phantoms 4 has none")
    assert not any(tmp_path.iterdir())


def test_demo_prints_metrics(tmp_path, tiny_ckpts, capsys):
    # the full demo is covered by tests/test_demo.py; here: it runs headless and prints its metrics
    assert main(["demo", "--headless", "--checkpoint", str(tiny_ckpts["lsdebm"]), "--out", str(tmp_path / "demo"),
                 "--K", "1", "--steps", "1", "--render", "matplotlib"]) == 0
    out = capsys.readouterr().out
    assert "DSC" in out and "metrics.json" in out


def test_the_command_line_is_ready_without_importing_torch():
    """Every subcommand's parser is built from light modules: `lsdebm --help` or a mistyped option answers
    without loading torch (it took 2.5 s when `evaluate` imported its rows from the torch-based module)."""
    import subprocess
    import sys

    code = ("import sys; from lsdebm.cli.main import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('lsdebm'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_output_into_a_closed_pipe_ends_quietly():
    """`lsdebm checkpoints --json | head -1` printed a BrokenPipeError traceback when head left early."""
    proc = subprocess.Popen([sys.executable, "-m", "lsdebm.cli.main", "checkpoints", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
