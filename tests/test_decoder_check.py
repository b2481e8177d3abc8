"""The decoder check (``lsdebm.evaluation.decoder``): Dice, calibration and dead last-block channels."""
from __future__ import annotations

import json
import math

import pytest
import torch

from lsdebm.errors import InputError
from lsdebm.evaluation.decoder import decoder_report, main
from lsdebm.runtime.checkpoint import load_checkpoint


def _masks(tiny_pair) -> torch.Tensor:
    hq = torch.as_tensor(tiny_pair[0])
    return torch.stack([hq, hq.flip(0)])[:, None]


def _force_last_block(ckpt, on: bool, final_bias: float, final_weight: float = 0.0):
    """Last block's channels all 1 (``on``) or all 0 everywhere; logits = final_weight * sum + final_bias."""
    block, final = ckpt.model.decoder.features[-2], ckpt.model.decoder.features[-1]
    bn = block[-2]
    with torch.no_grad():
        bn.weight.zero_()
        bn.bias.fill_(1.0 if on else -1.0)
        final.weight.fill_(final_weight)
        final.bias.fill_(final_bias)
    return ckpt


def test_a_dead_last_block_is_reported_with_the_bias_as_its_only_probability(tiny_ckpts, tiny_pair):
    ckpt = _force_last_block(load_checkpoint(tiny_ckpts["lsdebm"]), on=False, final_bias=0.303)
    report = decoder_report(ckpt, _masks(tiny_pair))
    assert report.largest_probability == pytest.approx(1 / (1 + math.exp(-0.303)), abs=1e-6)
    assert report.mean_inside == pytest.approx(report.largest_probability, abs=1e-6)
    assert report.saturated and report.dead_inside == tuple(range(len(report.active_inside)))
    assert "saturated: no voxel above 0.5752" in report.summary()
    x = _masks(tiny_pair).float()  # every voxel p > 0.5: Dice = 2|x| / (voxels + |x|)
    expected = float((2 * x.flatten(1).sum(1) / (x[0].numel() + x.flatten(1).sum(1))).mean())
    assert report.autoencoder_dice == pytest.approx(expected, abs=1e-6)


def test_a_live_confident_decoder_is_calibrated(tiny_ckpts, tiny_pair):
    ckpt = _force_last_block(load_checkpoint(tiny_ckpts["vae"]), on=True, final_bias=0.0, final_weight=1.0)
    report = decoder_report(ckpt, _masks(tiny_pair), batch=1)
    assert report.dead_inside == ()
    assert all(a == pytest.approx(1.0) for a in report.active_inside + report.active_outside)
    assert not report.saturated and report.largest_probability > 0.99
    assert report.n == 2 and "calibrated" in report.summary()


@pytest.mark.parametrize("kind", ["lebm", "reconnet"])
def test_models_without_an_encoder_are_refused_by_name(tiny_ckpts, tiny_pair, kind):
    with pytest.raises(InputError, match=f"a {kind} checkpoint has no encoder.*lsdebm or vae"):
        decoder_report(load_checkpoint(tiny_ckpts[kind]), _masks(tiny_pair))


@pytest.mark.parametrize("shape", [(2, 16, 16, 16), (2, 1, 8, 16, 16), (0, 1, 16, 16, 16), (1, 2, 16, 16, 16)])
def test_masks_off_the_model_grid_are_refused(tiny_ckpts, shape):
    with pytest.raises(InputError, match=r"expected \(N, 1, 16, 16, 16\)"):
        decoder_report(load_checkpoint(tiny_ckpts["lsdebm"]), torch.zeros(shape, dtype=torch.uint8))


def test_the_command_reports_real_crops_and_refuses_bad_arguments(tiny_ckpts, capsys, single_thread):
    assert main([str(tiny_ckpts["vae"]), "--n", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["n"] == 2 and 0.0 <= out["autoencoder_dice"] <= 1.0 and isinstance(out["saturated"], bool)
    with pytest.raises(SystemExit) as exc:
        main([str(tiny_ckpts["reconnet"])])
    assert exc.value.code == 2 and "has no encoder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([str(tiny_ckpts["vae"]), "--n", "0"])
    assert exc.value.code == 2 and "--n 0: expected" in capsys.readouterr().err
