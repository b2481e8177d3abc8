"""Training knobs added for the bundled CPU runs: Dice term, cosine learning rate, CPU bf16."""
from __future__ import annotations

import csv
import math

import pytest
import torch

from lsdebm.cli.main import main
from lsdebm.config import ConfigError, get_preset
from lsdebm.methods.losses import bce_sum, recon_loss
from lsdebm.runtime.checkpoint import load_checkpoint
from lsdebm.train.loop import lr_factor, set_lr

BASE = ["train", "--preset", "tiny", "--phantoms", "8", "--val-phantoms", "2", "--batch-size", "2",
        "--device", "cpu", "--threads", "1"]


def _mask():
    x = torch.zeros(2, 1, 8, 8, 8)
    x[:, :, 2:6, 3:5, 2:7] = 1
    return x


def test_dice_weight_zero_is_the_pure_bernoulli_nll():
    x = _mask()
    logits = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    cfg = get_preset("tiny")
    assert torch.equal(recon_loss(cfg, logits, x), bce_sum(logits, x))


def test_dice_term_is_foreground_scaled_and_vanishes_on_a_perfect_fit():
    x = _mask()
    cfg = get_preset("tiny").replace(**{"loss.dice_weight": 2.0})
    perfect = (x * 2 - 1) * 30.0
    assert recon_loss(cfg, perfect, x).item() == pytest.approx(bce_sum(perfect, x).item(), abs=1e-3)
    empty = torch.full(x.shape, -30.0)  # predicts nothing: soft Dice ~ 1/(|x|+1)
    extra = (recon_loss(cfg, empty, x) - bce_sum(empty, x)).item()
    fg = x[0].sum().item()
    assert extra == pytest.approx(2.0 * fg * (1 - 1 / (fg + 1)), rel=1e-3)


def test_dice_term_gradient_pushes_missed_foreground_up():
    x = _mask()
    cfg = get_preset("tiny").replace(**{"loss.dice_weight": 1.0})
    logits = torch.zeros(x.shape, requires_grad=True)
    (recon_loss(cfg, logits, x) - bce_sum(logits, x)).backward()
    assert (logits.grad[x > 0] < 0).all() and (logits.grad[x == 0] > 0).all()


def test_bad_loss_and_schedule_values_are_config_errors():
    with pytest.raises(ConfigError, match="dice_weight"):
        get_preset("tiny").replace(**{"loss.dice_weight": -1.0})
    with pytest.raises(ConfigError, match="lr_schedule"):
        get_preset("tiny").replace(**{"train.lr_schedule": "step"})
    with pytest.raises(ConfigError, match="lr_floor"):
        get_preset("tiny").replace(**{"train.lr_floor": 1.5})


def test_cosine_factor_and_time_based_progress():
    const = get_preset("tiny")
    cos = const.replace(**{"train.lr_schedule": "cosine", "train.lr_floor": 0.1})
    assert lr_factor(const, 0.7) == 1.0
    assert lr_factor(cos, 0.0) == pytest.approx(1.0)
    assert lr_factor(cos, 0.5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(cos, 1.0) == pytest.approx(0.1) and lr_factor(cos, 3.0) == pytest.approx(0.1)
    cos = cos.replace(**{"train.lr": 1e-3, "train.energy_lr": 1e-4})
    opts = [torch.optim.Adam([torch.zeros(1, requires_grad=True)]) for _ in range(2)]
    set_lr(opts, cos, step=1, total_steps=100, elapsed_s=0.0, max_minutes=None)
    assert opts[0].param_groups[0]["lr"] == pytest.approx(1e-3 * lr_factor(cos, 0.01))
    # a wall-time cap that is half used dominates the small step fraction
    set_lr(opts, cos, step=1, total_steps=100, elapsed_s=30.0, max_minutes=1.0)
    assert opts[0].param_groups[0]["lr"] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert opts[1].param_groups[0]["lr"] == pytest.approx(1e-4 * (0.1 + 0.9 * 0.5))


def test_cosine_run_logs_decaying_lr_and_bf16_cpu_training_works(tmp_path):
    out = tmp_path / "v.safetensors"
    assert main([*BASE, "--model", "vae", "--epochs", "3", "--lr", "1e-3", "--amp", "bf16",
                 "--set", "train.lr_schedule=cosine", "--set", "loss.dice_weight=1.0", "--out", str(out)]) == 0
    with open(tmp_path / "v.csv", newline="") as f:
        lrs = [float(r["lr"]) for r in csv.DictReader(f)]
    assert lrs[0] < 1e-3 and lrs[0] > lrs[1] > lrs[2]
    assert lrs[2] == pytest.approx(1e-3 * 0.02, rel=1e-2)
    ckpt = load_checkpoint(out)
    assert ckpt.config.train.lr_schedule == "cosine" and ckpt.config.loss.dice_weight == 1.0
    assert all(v.dtype == torch.float32 for v in ckpt.model.state_dict().values() if v.is_floating_point())
    assert all(math.isfinite(float(v.abs().sum())) for v in ckpt.model.state_dict().values() if v.is_floating_point())


def test_fp16_on_cpu_is_a_one_line_error(tmp_path, capsys):
    assert main([*BASE, "--model", "vae", "--epochs", "1", "--amp", "fp16", "--device", "cpu",
                 "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fp16" in err[0] and "bf16" in err[0]
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("extra, words", [(["--workers", "-1"], "--workers -1: expected 0"),
                                          (["--bank-cache", "FILE"], "a file; expected a folder")])
def test_bank_options_refused_in_one_line_before_any_pair_is_drawn(tmp_path, capsys, monkeypatch, extra, words):
    import lsdebm.data.mixed_set as ms

    monkeypatch.setattr(ms, "make_pair", lambda *a, **k: pytest.fail("a pair was drawn before the refusal"))
    afile = tmp_path / "a_file"
    afile.write_text("x")
    extra = [str(afile) if e == "FILE" else e for e in extra]
    out = tmp_path / "m.safetensors"
    args = ["train", "--model", "reconnet", "--preset", "tiny", "--data", "bundled", "--pairs", "4", "--epochs", "1",
            "--device", "cpu", "--threads", "1", "--out", str(out), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and not out.exists()
