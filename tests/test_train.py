"""``lsdebm train`` on the tiny preset: losses go down, CSV and info written, resume, bad options."""
from __future__ import annotations

import csv

import pytest
import torch

from lsdebm.cli.main import main
from lsdebm.runtime.checkpoint import load_checkpoint
from lsdebm.train.data import augment
from lsdebm.train.state import sidecar_path

BASE = ["train", "--preset", "tiny", "--phantoms", "8", "--val-phantoms", "2", "--batch-size", "2",
        "--device", "cpu", "--threads", "1"]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("kind", ["vae", "lsdebm", "lebm", "reconnet"])
def test_short_run_lowers_loss_and_writes_csv_and_info(tmp_path, kind):
    out = tmp_path / f"{kind}.safetensors"
    assert main([*BASE, "--model", kind, "--epochs", "4", "--lr", "3e-3", "--out", str(out)]) == 0
    rows = _rows(tmp_path / f"{kind}.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["loss_g"]) < float(rows[0]["loss_g"])
    assert all(0.0 <= float(r["val_dsc"]) <= 1.0 for r in rows)
    ckpt = load_checkpoint(out, expect_kind=kind)
    info = ckpt.info
    assert info["command"].startswith("lsdebm train") and "--model" in info["command"]
    assert info["train_data"]["seed"] == 1000 and info["train_data"]["n"] == 8
    assert info["val_data"]["seed"] == 2000
    assert info["epochs"] == 4 and info["wall_time_s"] > 0 and info["samples_per_s"] > 0
    assert info["final_val_dsc"] == pytest.approx(float(rows[-1]["val_dsc"]), abs=1e-4)
    assert info["device"] == "cpu" and info["samples_seen"] == 32
    assert sidecar_path(out).is_file()


def test_resume_continues_epochs_and_optimizer(tmp_path):
    out = tmp_path / "vae.safetensors"
    assert main([*BASE, "--model", "vae", "--epochs", "1", "--out", str(out)]) == 0
    first = load_checkpoint(out).model.state_dict()
    assert main([*BASE, "--model", "vae", "--epochs", "3", "--resume", str(out), "--out", str(out)]) == 0
    rows = _rows(tmp_path / "vae.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    ckpt = load_checkpoint(out)
    assert ckpt.info["epochs"] == 3 and ckpt.info["samples_seen"] == 24
    changed = [k for k, v in ckpt.model.state_dict().items() if v.is_floating_point() and not torch.equal(v, first[k])]
    assert changed
    # nothing left to do
    assert main([*BASE, "--model", "vae", "--epochs", "3", "--resume", str(out), "--out", str(out)]) == 2


def test_resume_needs_sidecar(tmp_path, capsys):
    out = tmp_path / "r.safetensors"
    assert main([*BASE, "--model", "reconnet", "--epochs", "1", "--out", str(out)]) == 0
    sidecar_path(out).unlink()
    capsys.readouterr()
    assert main([*BASE, "--model", "reconnet", "--epochs", "2", "--resume", str(out), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim.safetensors" in err[0]


def test_trains_from_phantom_set_directory(tmp_path):
    from lsdebm.data.phantom_set import write_set

    write_set(tmp_path / "set", 4, seed=5, size=16, spacing=8.0)
    out = tmp_path / "rn.safetensors"
    assert main([*BASE[:3], "--data", str(tmp_path / "set"), *BASE[5:], "--model", "reconnet", "--epochs", "1",
                 "--out", str(out)]) == 0
    assert load_checkpoint(out).info["train_data"]["n"] == 4
    out.unlink()
    assert main([*BASE[:3], "--data", str(tmp_path / "set"), *BASE[5:], "--model", "reconnet", "--epochs", "1",
                 "--out", str(out), "--split", "val"]) == 2  # a phantom set has no subjects to split
    assert not out.exists()


@pytest.mark.parametrize("extra, needle", [
    (["--phantoms", "0"], "--phantoms"),
    (["--set", "langevin.nope=3"], "nope"),
    (["--set", "K=3"], "SECTION.FIELD=VALUE"),
    (["--val-phantoms", "-1"], "--val-phantoms"),
    (["--device", "cuda"], "cuda"),
    (["--max-minutes", "0"], "--max-minutes"),
    (["--resume", "missing.safetensors"], "missing.safetensors"),
])
def test_bad_options_give_one_line_errors(tmp_path, capsys, extra, needle):
    if extra[:2] == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    args = [*BASE, "--model", "vae", "--epochs", "1", "--out", str(tmp_path / "x.safetensors")]
    if extra[0] == "--phantoms":
        args[args.index("--phantoms") + 1] = extra[1]
    else:
        args += extra
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsdebm: error:") and needle in err[0]


def test_existing_out_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    out.write_bytes(b"something")
    assert main([*BASE, "--model", "vae", "--epochs", "1", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"something"


def test_reconnet_directory_without_lq_is_an_error(tmp_path, capsys):
    import shutil

    from lsdebm.data.phantom_set import write_set

    write_set(tmp_path / "set", 2, seed=5, size=16, spacing=8.0)
    shutil.rmtree(tmp_path / "set" / "lq")
    assert main([*BASE[:3], "--data", str(tmp_path / "set"), *BASE[5:], "--model", "reconnet",
                 "--out", str(tmp_path / "r.safetensors")]) == 2
    assert "lq/" in capsys.readouterr().err


def test_augment_is_shared_and_preserves_masks():
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(3, 1, 8, 8, 8, generator=g) > 0.5).float()
    x, y = augment([a, a.clone()], torch.Generator().manual_seed(1), max_shift=2)
    assert torch.equal(x, y)  # the same transform for lq and hq
    assert torch.equal(x.flatten(1).sum(1), a.flatten(1).sum(1))  # flips and circular shifts keep volume
    assert not torch.equal(x, a)


def test_resume_keeps_its_data_and_names_the_options_it_ignores(tmp_path, capsys):
    """--resume with other data (32 phantoms of seed 5 after 8 of seed 1000) was accepted and trained on them;
    --batch-size / --kl-weight / --set were ignored without a word (the config is the checkpoint's)."""
    out = tmp_path / "vae.safetensors"
    assert main([*BASE, "--model", "vae", "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    resume = ["--model", "vae", "--epochs", "2", "--resume", str(out), "--out", str(out)]
    other = [a if a != "8" else "32" for a in BASE]
    assert main([*other, *resume, "--data-seed", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "continues a run on the data it started with" in err and len(err.splitlines()) == 1
    assert _rows(tmp_path / "vae.csv")[-1]["epoch"] == "1"  # nothing trained
    assert main([*BASE, *resume, "--kl-weight", "0.01", "--set", "train.train_K=7"]) == 0
    err = capsys.readouterr().err
    assert "the run's config comes from its checkpoint; ignored: --kl-weight 0.01 (the run's: 1)" in err
    assert "--set train.train_K=7" in err
    assert [int(r["epoch"]) for r in _rows(tmp_path / "vae.csv")] == [1, 2]
