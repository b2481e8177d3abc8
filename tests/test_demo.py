"""``lsdebm demo`` without a display: every promised file, refusals, renderer fallback, bundled checkpoint."""
import json

import nibabel as nib
import numpy as np
import pytest

from lsdebm.cli.main import main
from lsdebm.explore.demo import FIXED_FILES
from lsdebm.runtime.checkpoint import bundled_checkpoints
from lsdebm.sampling import Trajectory


def png_pixels(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"), dtype=float)


def check_outputs(out, n_views_min=3):
    for name in FIXED_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    views = sorted(out.glob("view_*.png"))
    assert len(views) >= n_views_min
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["reconstruction_vs_hq"]) >= {"dsc", "vs", "sen", "spec", "nmi", "ck", "hd95", "assd"}
    assert metrics["input_lq_vs_hq"]["dsc"] > 0.5 and metrics["render_backend"] in ("pyvista", "matplotlib")
    assert metrics["provenance"]["checkpoints"][0]["sha256"]
    traj = Trajectory.load(out / "trajectory.npz")
    assert traj.metadata["checkpoint_sha256"] == metrics["provenance"]["checkpoints"][0]["sha256"]
    hq, rec = nib.load(out / "ground_truth_hq.nii.gz"), nib.load(out / "reconstruction.nii.gz")
    np.testing.assert_allclose(hq.affine, rec.affine)
    assert set(np.unique(np.asarray(rec.dataobj))) <= {0, 1}
    assert png_pixels(out / "latent_variance.png").std() > 5
    return views, metrics


def test_headless_demo_writes_every_promised_file(tmp_path, fitted_tiny_lsdebm, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)  # no display: headless without being asked
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "demo"
    assert main(["demo", "--checkpoint", str(fitted_tiny_lsdebm), "--out", str(out), "--K", "3"]) == 0
    views, metrics = check_outputs(out)
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed and "DSC" in printed and "metrics.json" in printed
    assert metrics["reconstruction_vs_hq"]["dsc"] > 0.3  # the fitted decoder draws a vertebra
    shots = [png_pixels(v) for v in views]
    assert all(s.std() > 5 for s in shots)  # not blank
    assert np.abs(shots[0] - shots[1]).mean() > 0.1  # encoding and most diffused step differ
    # a second run refuses to overwrite before sampling, and --overwrite replaces
    assert main(["demo", "--checkpoint", str(fitted_tiny_lsdebm), "--out", str(out), "--headless"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_headless_demo_matplotlib_fallback(tmp_path, tiny_ckpts):
    out = tmp_path / "mpl"
    assert main(["demo", "--headless", "--checkpoint", str(tiny_ckpts["lsdebm"]), "--out", str(out),
                 "--render", "matplotlib", "--K", "2", "--steps", "1", "--sample", "phantom"]) == 0
    _, metrics = check_outputs(out, n_views_min=2)
    assert metrics["render_backend"] == "matplotlib"
    assert metrics["case"] == "L3-seed0" and metrics["attribution"] is None  # the phantom, on the model grid
    assert "run_pasted_without_output_step_vs_hq" not in metrics


def test_demo_without_bundled_checkpoint_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    import lsdebm.explore.demo as demo

    monkeypatch.setattr(demo, "bundled_checkpoints", dict)
    assert main(["demo", "--headless", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no bundled LSD-EBM checkpoint" in err and "--checkpoint" in err
    assert not (tmp_path / "x").exists()


def test_demo_refuses_a_reconnet_checkpoint(tmp_path, tiny_ckpts, capsys):
    assert main(["demo", "--headless", "--checkpoint", str(tiny_ckpts["reconnet"]), "--out", str(tmp_path)]) == 2
    assert "reconnet" in capsys.readouterr().err


@pytest.mark.skipif("lsdebm-default" not in bundled_checkpoints(), reason="bundled LSD-EBM not installed yet")
def test_headless_demo_with_bundled_checkpoint(tmp_path):
    out = tmp_path / "bundled"
    assert main(["demo", "--headless", "--out", str(out), "--K", "5", "--device", "cpu"]) == 0
    _, metrics = check_outputs(out)
    assert metrics["provenance"]["checkpoints"][0]["name"] == "lsdebm-default"
    # the real sample (a validation subject): the output comes back better than the thick-slice input,
    # on the input's own 1 mm grid, with the data's attribution
    assert metrics["case"] == "L3_verse009" and "CC BY-SA 4.0" in metrics["attribution"]
    assert metrics["reconstruction_vs_hq"]["dsc"] > metrics["input_lq_vs_hq"]["dsc"] + 0.005
    assert metrics["run_pasted_without_output_step_vs_hq"]["dsc"] < metrics["reconstruction_vs_hq"]["dsc"]
    rec = nib.load(out / "reconstruction.nii.gz")
    np.testing.assert_allclose(nib.affines.voxel_sizes(rec.affine), 1.0)


def test_demo_refuses_a_level_the_real_sample_does_not_have(tmp_path, tiny_ckpts, capsys):
    assert main(["demo", "--headless", "--checkpoint", str(tiny_ckpts["lsdebm"]), "--out", str(tmp_path / "x"),
                 "--level", "L9"]) == 2
    err = capsys.readouterr().err
    assert "L9_verse009" in err and "L3" in err and "Traceback" not in err
