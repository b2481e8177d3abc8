"""``lsdebm train --resume`` refuses a sidecar it cannot continue from, and a run with nothing left to do, before
it reads any data (minutes with a real-mask bank); an explicit ``--preset`` it ignores is named."""
from __future__ import annotations

import json
import shutil

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from lsdebm.cli.main import main
from lsdebm.train.state import sidecar_path

BASE = ["train", "--phantoms", "2", "--val-phantoms", "1", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny VAE and a tiny LEBM run, one epoch each."""
    folder = tmp_path_factory.mktemp("runs")
    for kind in ("vae", "lebm"):
        assert main([*BASE, "--preset", "tiny", "--model", kind, "--epochs", "1",
                     "--out", str(folder / f"{kind}.safetensors")]) == 0
    for name, extra in (("vae_other", ["--epochs", "1", "--seed", "7"]), ("vae_longer", ["--epochs", "2"])):
        out = str(folder / f"{name}.safetensors")
        assert main([*BASE, "--preset", "tiny", "--model", "vae", *extra, "--out", out]) == 0
    return folder


def _copy_vae(runs, tmp_path):
    out = tmp_path / "vae.safetensors"
    shutil.copy(runs / "vae.safetensors", out)
    shutil.copy(sidecar_path(runs / "vae.safetensors"), sidecar_path(out))
    return out


def _without_kind(source, target):
    """``source`` as the sidecars written before the kind was recorded."""
    with safe_open(str(source), framework="pt") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta = json.loads(header["meta"])
    assert meta.pop("kind") == "lebm"
    save_file(tensors, str(target), metadata={**header, "meta": json.dumps(meta)})


@pytest.mark.parametrize("case", ["done", "no_sidecar", "lebm_sidecar", "old_lebm_sidecar", "other_vae_sidecar",
                                  "longer_vae_sidecar"])
def test_a_resume_that_cannot_continue_is_refused_before_any_data(runs, tmp_path, capsys, monkeypatch, case):
    """``--epochs`` not above the epochs done and a missing sidecar were refused only after the data were loaded;
    another run's sidecar gave ``weights do not match the model (Error(s) in loading state_dict for VAE:)``."""
    import lsdebm.train.loop as loop

    out = _copy_vae(runs, tmp_path)
    side = sidecar_path(out)
    if case == "no_sidecar":
        side.unlink()
    elif case == "lebm_sidecar":
        shutil.copy(sidecar_path(runs / "lebm.safetensors"), side)
    elif case == "old_lebm_sidecar":
        _without_kind(sidecar_path(runs / "lebm.safetensors"), side)
    elif case in ("other_vae_sidecar", "longer_vae_sidecar"):  # another run of the same kind: it was continued
        other = {"other_vae_sidecar": "vae_other", "longer_vae_sidecar": "vae_longer"}[case]
        shutil.copy(sidecar_path(runs / f"{other}.safetensors"), side)
    monkeypatch.setattr(loop, "load_data", lambda *a, **k: pytest.fail("data were read before the refusal"))
    capsys.readouterr()
    epochs = "1" if case == "done" else "2"
    assert main([*BASE, "--model", "vae", "--epochs", epochs, "--resume", str(out), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lsdebm: error:"), err
    needle = {"done": f"--resume {out}: already trained for 1 epoch; pass --epochs above 1",
              "no_sidecar": f"training-state sidecar {side} not found",
              "lebm_sidecar": f"{side}: the training state of a lebm run, not of {out} (a vae model)",
              "old_lebm_sidecar": f"{side}: not the training state of {out} (a vae model): its weights do not fit",
              "other_vae_sidecar": f"{side}: its weights are not those of {out} (",
              "longer_vae_sidecar": f"{side}: the training state after epoch 2, but {out} was saved after epoch 1"}
    assert needle[case] in err[0]


def test_an_explicit_preset_on_resume_is_named_as_ignored(runs, tmp_path, capsys):
    """``--preset`` was silently ignored on ``--resume`` (its default hid whether it was given at all)."""
    out = _copy_vae(runs, tmp_path)
    capsys.readouterr()
    assert main([*BASE, "--preset", "default", "--model", "vae", "--epochs", "2", "--resume", str(out),
                 "--out", str(out)]) == 0
    assert "ignored: --preset default (the run's: tiny)" in capsys.readouterr().err
    assert main([*BASE, "--preset", "tiny", "--model", "vae", "--epochs", "3", "--resume", str(out),
                 "--out", str(out)]) == 0
    assert "ignored" not in capsys.readouterr().err


def test_init_from_fine_tunes_a_checkpoint_with_fresh_optimisers(runs, tmp_path, capsys):
    """--init-from CKPT: a new run (epoch 1, its own log) that starts from CKPT's weights and config, records where it
    started, and is refused with --resume, for a missing file or a checkpoint of another kind."""
    import torch

    from lsdebm.runtime.checkpoint import load_checkpoint

    source = runs / "vae.safetensors"
    out = tmp_path / "tuned.safetensors"
    argv = [*BASE, "--model", "vae", "--epochs", "1", "--lr", "1e-12", "--batch-size", "1", "--out", str(out)]
    assert main([*argv, "--init-from", str(source), "--data-seed", "7"]) == 0  # other data than the source's
    start, tuned = load_checkpoint(source), load_checkpoint(out)
    assert tuned.config.preset == "tiny" and tuned.config.train.batch_size == 1  # the checkpoint's preset, not default
    assert tuned.info["init_from"] == {"path": str(source), "sha256": start.sha256, "epochs": 1, "device": "cpu",
                                       "wall_time_s": start.info["wall_time_s"]}
    from lsdebm.evaluation.phantoms import training_seconds  # the training behind the source counts too

    assert training_seconds(tuned.info) == tuned.info["wall_time_s"] + start.info["wall_time_s"]
    assert len(tuned.info["commands"]) == 2 and tuned.info["epochs"] == 1 and tuned.info["train_data"]["seed"] == 7
    weights = dict(start.model.named_parameters())  # (normalisation statistics move with any training)
    for key, value in tuned.model.named_parameters():  # lr 1e-12: the weights are the source's
        assert torch.allclose(value, weights[key], atol=1e-6), key
    fresh = tmp_path / "fresh.safetensors"  # the same command without --init-from starts elsewhere
    assert main([*argv[:-1], str(fresh), "--preset", "tiny"]) == 0
    assert any(not torch.allclose(v, weights[k], atol=1e-6) for k, v in load_checkpoint(fresh).model.named_parameters())
    capsys.readouterr()
    for extra, needle in [(["--init-from", str(source), "--resume", str(source)], "give one"),
                          (["--init-from", str(tmp_path / "nope.safetensors")], "checkpoint file not found"),
                          (["--init-from", str(runs / "lebm.safetensors")], "holds a lebm model, not vae")]:
        assert main([*argv[:-1], str(tmp_path / "x.safetensors"), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
        assert not (tmp_path / "x.safetensors").exists()
