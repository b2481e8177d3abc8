"""`lsdebm train --data bundled`: ReconNet on real masks mixed with phantoms, real val subjects."""
from __future__ import annotations

import torch

from lsdebm.cli.main import main
from lsdebm.data.real import load_real_masks
from lsdebm.runtime.checkpoint import read_metadata

torch.set_num_threads(1)


def test_train_cli_on_bundled_real_data(tmp_path, capsys):
    out = tmp_path / "r.safetensors"
    args = ["train", "--model", "reconnet", "--preset", "tiny", "--data", "bundled", "--pairs", "4", "--epochs", "2",
            "--val-phantoms", "2", "--batch-size", "2", "--redraw", "0.5", "--threads", "1", "--device", "cpu",
            "--out", str(out)]
    assert main(args) == 0
    meta = read_metadata(out)
    info = meta["info"]
    train = info["train_data"]
    assert train["source"] == "mixed" and train["n"] == 4
    assert train["real_pairs"] == round(4 * 0.6) == 2 and train["phantom_pairs"] == 2
    assert train["split"] == "train" and train["redraw_per_epoch"] == 0.5
    assert train["real_masks"]
    val = info["val_data"]
    assert val["source"] == "mixed" and val["split"] == "val" and val["real_pairs"] == val["n"] == 2
    assert not set(train["real_masks"]) & set(val["real_masks"])
    # the train and val masks come from different subjects
    rows = {m.name: m.subject for m in load_real_masks()}
    assert not {rows[n] for n in train["real_masks"]} & {rows[n] for n in val["real_masks"]}
    offset = meta["config"].model.centroid_offset_mm
    assert len(offset) == 3 and all(isinstance(v, float) for v in offset)
    assert info["epochs"] == 2

    bad = tmp_path / "bad.safetensors"
    capsys.readouterr()
    assert main([*args[:-1], str(bad), "--real-fraction", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsdebm: error:") and "--real-fraction" in err[0]
    assert not any(p.name.startswith("bad") for p in tmp_path.iterdir())  # nothing written


def test_train_on_a_plain_folder_of_masks_validates_on_phantoms(tmp_path):
    import shutil

    from lsdebm.data.real import bundled_manifest

    folder = tmp_path / "masks"
    folder.mkdir()
    shutil.copy(bundled_manifest().parent / "verse" / "L3_verse004.nii.gz", folder / "L3_verse004.nii.gz")
    # no level in the name: kept (a user's folder of masks), not dropped by the T10-L5 filter
    shutil.copy(bundled_manifest().parent / "verse" / "L4_verse004.nii.gz", folder / "sub-004_mask.nii.gz")
    out = tmp_path / "f.safetensors"
    assert main(["train", "--model", "vae", "--preset", "tiny", "--data", str(folder), "--pairs", "3", "--epochs", "1",
                 "--val-phantoms", "2", "--batch-size", "2", "--threads", "1", "--device", "cpu",
                 "--out", str(out)]) == 0
    info = read_metadata(out)["info"]
    assert info["train_data"]["real_source"] == str(folder)
    assert sorted(info["train_data"]["real_masks"]) == ["L3_verse004", "sub-004_mask"]
    assert info["val_data"]["source"] == "generated"  # no 'val' subjects in a plain folder


def test_workers_train_the_same_weights(tmp_path, capsys):
    """--workers 2 (pairs drawn in forked processes, the next epoch's while this one trains) trains the
    model bit for bit as drawing in the training process does."""
    from safetensors.torch import load_file

    outs = []
    for workers in ("0", "2"):
        out = tmp_path / f"w{workers}.safetensors"
        assert main(["train", "--model", "reconnet", "--preset", "tiny", "--data", "bundled", "--pairs", "8",
                     "--epochs", "3", "--redraw", "0.25", "--val-phantoms", "2", "--batch-size", "4",
                     "--workers", workers, "--threads", "1", "--device", "cpu", "--out", str(out)]) == 0
        outs.append(load_file(out))
    assert outs[0].keys() == outs[1].keys()
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


def test_a_resumed_run_on_real_masks_trains_the_weights_of_an_unbroken_one(tmp_path):
    """The bank's per-epoch re-draws were not replayed on --resume, so a run resumed at epoch 2 trained on
    other pairs from epoch 3 on than one run straight to 4 (phantom runs were bit-identical already)."""
    import shutil

    import torch

    from lsdebm.data.real import bundled_manifest
    from lsdebm.runtime.checkpoint import load_checkpoint

    folder = tmp_path / "masks"
    folder.mkdir()
    for name in ("L3_verse004", "L4_verse004"):
        shutil.copy(bundled_manifest().parent / "verse" / f"{name}.nii.gz", folder / f"{name}.nii.gz")
    common = ["train", "--model", "reconnet", "--preset", "tiny", "--data", str(folder), "--pairs", "8",
              "--redraw", "0.25", "--val-phantoms", "2", "--batch-size", "2", "--threads", "1", "--device", "cpu"]
    straight, broken = tmp_path / "straight.safetensors", tmp_path / "broken.safetensors"
    assert main([*common, "--epochs", "4", "--out", str(straight)]) == 0
    assert main([*common, "--epochs", "2", "--out", str(broken)]) == 0
    assert main([*common, "--epochs", "4", "--resume", str(broken), "--out", str(broken)]) == 0
    a, b = load_checkpoint(straight).model.state_dict(), load_checkpoint(broken).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
