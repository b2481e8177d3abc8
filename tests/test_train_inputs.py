"""``lsdebm train`` given bad data, output and option values: one-line errors before the run, nothing lost."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lsdebm.cli.main import main
from lsdebm.data.real import read_manifest
from lsdebm.errors import InputError

BASE = ["train", "--preset", "tiny", "--val-phantoms", "1", "--epochs", "1", "--device", "cpu", "--threads", "1"]


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsdebm: error:"), err
    return err[0]


def _mask(path: Path) -> Path:
    data = np.zeros((12, 12, 12), np.uint8)
    data[3:9, 4:8, 3:9] = 1
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


@pytest.mark.parametrize("name", ["mask.nii.gz", "mask.nii", "latin1.csv"])
def test_a_single_mask_or_a_file_that_is_no_utf8_csv_as_data_is_one_line(tmp_path, capsys, name):
    """``--data mask.nii.gz`` (one mask, not a folder) and a Latin-1 manifest were UnicodeDecodeError tracebacks."""
    data = tmp_path / name
    if name.endswith(".csv"):
        data.write_bytes("file,level\nL3_é.nii.gz,L3\n".encode("latin-1"))
    else:
        _mask(data)
    out = tmp_path / "m.safetensors"
    assert main([*BASE, "--model", "vae", "--data", str(data), "--pairs", "2", "--out", str(out)]) == 2
    line = _one_error(capsys)
    assert str(data) in line and ("manifest" in line and "expected" in line)
    assert not out.exists()


def test_manifest_with_a_byte_order_mark_short_rows_and_a_blank_file(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark: its 'file' column was not found; a short row's missing
    split was None (never 'train'); a blank file cell was read as the manifest's own folder."""
    _mask(tmp_path / "L3_a.nii.gz")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("\ufefffile,level,split\r\nL3_a.nii.gz,L3\r\n".encode())
    root, rows = read_manifest(manifest)
    assert root == tmp_path and rows[0]["file"] == "L3_a.nii.gz" and rows[0]["split"] == "train"
    manifest.write_text("file,level,split\n,L3,train\n")
    with pytest.raises(InputError, match="row 2 names no file"):
        read_manifest(manifest)


@pytest.mark.parametrize("case", ["directory", "under_a_file", "log_is_the_manifest", "someone_elses_log", "proc"])
def test_outputs_that_cannot_or_must_not_be_written_are_refused_before_the_run(tmp_path, capsys, monkeypatch, case):
    """Found only when the first epoch was saved (an unwritable --out, a directory); ``--data masks.csv --out
    masks.safetensors`` wrote the epoch log over the manifest, and a new --out replaced an existing CSV beside it."""
    import lsdebm.train.loop as loop

    if case == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc")
    monkeypatch.setattr(loop, "load_data", lambda *a, **k: pytest.fail("the run started"))
    _mask(tmp_path / "L3_a.nii.gz")
    manifest = tmp_path / "masks.csv"
    manifest.write_text("file,level\nL3_a.nii.gz,L3\n")
    (tmp_path / "blocker").write_text("x")
    (tmp_path / "dir.safetensors").mkdir()
    (tmp_path / "run.csv").write_text("mine\n")
    out, extra = {"directory": ("dir.safetensors", ["--overwrite"]), "under_a_file": ("blocker/x.safetensors", []),
                  "log_is_the_manifest": ("masks.safetensors", ["--overwrite"]),
                  "someone_elses_log": ("run.safetensors", []), "proc": ("/proc/x.safetensors", [])}[case]
    args = [*BASE, "--model", "vae", "--data", str(manifest), "--out", str(tmp_path / out), *extra]
    assert main(args) == 2
    line = _one_error(capsys)
    assert "--out" in line
    assert manifest.read_text() == "file,level\nL3_a.nii.gz,L3\n" and (tmp_path / "run.csv").read_text() == "mine\n"


@pytest.mark.parametrize("extra, needle", [
    (["--data-seed", "-1"], "--data-seed -1: seeds must be >= 0"),
    (["--val-seed", "-3"], "--val-seed -3: seeds must be >= 0"),
    (["--max-minutes", "nan"], "--max-minutes nan must be > 0"),
    (["--set", "train.epochs=2"], "--epochs and --set train.epochs=2 both set train.epochs"),
    (["--set", "train.batch_size=1.5"], "--set train.batch_size=1.5: expected a whole number"),
    (["--set", "model.grid=16.0"], "--set model.grid=16.0: expected a whole number"),
    (["--lr", "inf"], "--lr inf must be a finite number > 0"),
    (["--model", "lebm", "--lebm-steps", "0"], "--lebm-steps 0 must be >= 1"),
])
def test_bad_values_are_one_line_errors(tmp_path, capsys, extra, needle):
    """Each was a traceback (numpy's seed check, Config.replace's TypeError, slicing by a float batch size) or was
    accepted (a NaN time limit never stopped the run; --lr inf trained NaN weights; --lebm-steps 0 meant 20)."""
    model = [] if "--model" in extra else ["--model", "vae"]
    out = tmp_path / "x.safetensors"
    assert main([*BASE, "--phantoms", "2", *model, *extra, "--out", str(out)]) == 2
    assert needle in _one_error(capsys)
    assert not out.exists()


def test_interrupted_run_prints_its_line_after_the_progress_bar(tmp_path, capsys, monkeypatch):
    """Ctrl-C (or an error) mid-run printed ``lsdebm: interrupted`` on the progress bar's line."""
    import lsdebm.train.loop as loop

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "validation_dice", interrupt)
    assert main([*BASE, "--model", "vae", "--phantoms", "2", "--out", str(tmp_path / "x.safetensors")]) == 130
    assert "lsdebm: interrupted" in capsys.readouterr().err.replace("\r", "\n").splitlines()


@pytest.mark.parametrize("workers", ["10000", "LIMIT+1"])
def test_workers_above_four_per_cpu_are_refused_before_any_data(tmp_path, capsys, monkeypatch, workers):
    """``--workers`` had no upper bound: ``--workers 10000`` would have forked 10000 processes."""
    import os

    import lsdebm.train.loop as loop

    monkeypatch.setattr(loop, "load_data", lambda *a, **k: pytest.fail("data were read before the refusal"))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = str(4 * cpus + 1) if workers == "LIMIT+1" else workers
    out = tmp_path / "m.safetensors"
    assert main([*BASE, "--model", "vae", "--data", "bundled", "--workers", workers, "--out", str(out)]) == 2
    line = _one_error(capsys)
    assert f"--workers {workers}: expected 0" in line and f"to {4 * cpus} (4 per CPU of the {cpus} here" in line
    assert not out.exists()


def test_a_split_that_matches_nothing_names_the_splits_there(tmp_path):
    """``no real masks match split='train'`` left the user to open the manifest to see which splits it has."""
    from lsdebm.data.real import load_real_masks

    _mask(tmp_path / "L3_a.nii.gz")
    _mask(tmp_path / "L4_a.nii.gz")
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,level,split\nL3_a.nii.gz,L3,val\nL4_a.nii.gz,L4,test\n")
    with pytest.raises(InputError, match=r"m.csv: no real masks match split='train'.*; the manifest has splits: "
                                         r"test, val and levels: L3, L4$"):
        load_real_masks(manifest, split="train")
    # levels the run does not take (L9, XX) were blamed on the split alone
    manifest.write_text("file,level,split\nL3_a.nii.gz,L9,train\nL4_a.nii.gz,XX,train\n")
    with pytest.raises(InputError, match=r"levels=\('L1', 'L5'\); the manifest has splits: train and levels: L9, XX$"):
        load_real_masks(manifest, split="train", levels=("L1", "L5"))
    manifest.write_text("file,level,split\n")  # a header alone: it has a 'file' column, and no rows
    with pytest.raises(InputError, match=r"m.csv: the manifest lists no masks \(only its header\)"):
        load_real_masks(manifest, split="train")
    folder = tmp_path / "folder"
    folder.mkdir()
    _mask(folder / "L3_a.nii.gz")
    with pytest.raises(InputError, match="split='val'.*; a folder of masks without a manifest.csv is all split"):
        load_real_masks(folder, split="val")
    _mask(folder / "L4_A.NII.GZ")  # skipped: said so, not silently (one mask of two was trained on)
    from lsdebm.data.real import read_manifest
    from lsdebm.errors import InputWarning

    with pytest.warns(InputWarning, match=r"skipped 1 file\(s\) whose NIfTI suffix is not lower-case \(L4_A.NII.GZ\)"):
        assert [row["file"] for row in read_manifest(folder)[1]] == ["L3_a.nii.gz"]
