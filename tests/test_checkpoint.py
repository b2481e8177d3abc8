"""Safetensors checkpoints: round trip, identical samples, refusal of pickles and bad files."""
import pickle

import pytest
import torch

from lsdebm.config import get_preset
from lsdebm.errors import CheckpointError, LsdebmError
from lsdebm.methods import RunSettings, run
from lsdebm.nn import build_model
from lsdebm.runtime.checkpoint import load_checkpoint, read_metadata, save_checkpoint


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_save_load_identical_samples(tmp_path, tiny_pair):
    torch.manual_seed(0)
    model = build_model("lsdebm", get_preset("tiny")).eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors", info={"training_data": "none"})
    loaded = load_checkpoint(path)
    assert loaded.kind == "lsdebm" and loaded.info["training_data"] == "none" and len(loaded.sha256) == 64
    x = torch.as_tensor(tiny_pair[1]).float()
    a = run(model, x, RunSettings(seed=3, use_mean=False)).probs
    b = run(loaded.model, x, RunSettings(seed=3, use_mean=False)).probs
    assert torch.equal(a, b)
    assert read_metadata(path)["config"] == model.cfg


def test_half_storage_loads_as_float32(tmp_path):
    model = build_model("vae", get_preset("tiny"))
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "h.safetensors", half=True))
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl"])
def test_pickles_are_refused_and_never_unpickled(tmp_path, suffix):
    marker = tmp_path / "pwned"
    bad = tmp_path / f"model{suffix}"
    bad.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(CheckpointError, match="never loaded"):
        load_checkpoint(bad)
    disguised = tmp_path / "model.safetensors"
    disguised.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(CheckpointError):
        load_checkpoint(disguised)
    assert not marker.exists()


def test_bad_checkpoints(tmp_path):
    model = build_model("vae", get_preset("tiny"))
    good = save_checkpoint(model, tmp_path / "g.safetensors")
    trunc = tmp_path / "t.safetensors"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="t.safetensors"):
        load_checkpoint(trunc)
    with pytest.raises(CheckpointError, match="holds a vae model, expected lsdebm"):
        load_checkpoint(good, expect_kind="lsdebm")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(LsdebmError, match="already exists"):
        save_checkpoint(model, good)


def test_new_sampling_defaults_keep_weights_and_record_why(tmp_path):
    from lsdebm.runtime.checkpoint import with_sampling_settings

    torch.manual_seed(0)
    src = save_checkpoint(build_model("lebm", get_preset("tiny")), tmp_path / "l.safetensors", info={"command": "x"})
    dst = with_sampling_settings(src, tmp_path / "l2.safetensors",
                                 {"lebm.posterior_steps": 9, "lebm.inference_prior_sigma": 4.0}, "val run 7")
    a, b = load_checkpoint(src), load_checkpoint(dst)
    assert b.config.lebm.posterior_steps == 9 and b.config.lebm.inference_prior_sigma == 4.0
    assert b.config.replace(**{"lebm.posterior_steps": 3, "lebm.inference_prior_sigma": None}) == a.config
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert b.info["command"] == "x" and b.info["sampling_changes"] == [
        {"from": {"lebm.posterior_steps": 3, "lebm.inference_prior_sigma": None},
         "to": {"lebm.posterior_steps": 9, "lebm.inference_prior_sigma": 4.0}, "reason": "val run 7"}]
    # only what changes is recorded: a second call with one value as it is and one new adds the new one alone
    dst2 = with_sampling_settings(dst, tmp_path / "l3.safetensors",
                                  {"lebm.posterior_steps": 9, "lebm.inference_prior_sigma": 2.0}, "val run 8")
    assert load_checkpoint(dst2).info["sampling_changes"][1:] == [
        {"from": {"lebm.inference_prior_sigma": 4.0}, "to": {"lebm.inference_prior_sigma": 2.0}, "reason": "val run 8"}]
    same = with_sampling_settings(dst, tmp_path / "l4.safetensors", {"lebm.posterior_steps": 9}, "as it is")
    assert load_checkpoint(same).info["sampling_changes"] == b.info["sampling_changes"]
    with pytest.raises(CheckpointError, match=r"\['model.grid'\] are not sampling settings"):
        with_sampling_settings(src, tmp_path / "bad.safetensors", {"model.grid": 32}, "no")
    with pytest.raises(CheckpointError, match="say why"):
        with_sampling_settings(src, tmp_path / "bad.safetensors", {"lebm.posterior_steps": 4}, " ")
    assert not (tmp_path / "bad.safetensors").exists()
