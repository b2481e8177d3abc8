"""Validation Dice of a model on a held-out mask set, through the same sampler users run.

Reconstruction goes through :func:`lsdebm.sampling.run` with the checkpoint's own settings
(LSD-EBM: forward diffusion to ``recon_steps`` then the reverse chain; LEBM: posterior
Langevin from noise; VAE: decode the posterior mean; ReconNet: LQ -> HQ), so the number is what
``lsdebm reconstruct`` would give. For LSD-EBM the plain autoencoder Dice (decode the
posterior mean, no diffusion) is reported too.
"""
from __future__ import annotations

import numpy as np
import torch

from lsdebm import methods
from lsdebm.evaluation.metrics import dice
from lsdebm.nn.registry import info_of
from lsdebm.train.data import MaskSet


def _dices(probs: torch.Tensor, target: torch.Tensor) -> list[float]:
    pred = (probs >= 0.5).cpu().numpy()
    gt = target.cpu().numpy() > 0
    return [dice(p[0], g[0]) for p, g in zip(pred, gt)]


def validation_dice(model: torch.nn.Module, val: MaskSet, seed: int, batch_size: int = 8) -> dict[str, float]:
    """Mean Dice against the HQ masks: ``val_dsc`` (the method) and, for LSD-EBM, ``val_dsc_ae``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    info = info_of(model)
    scores: dict[str, list[float]] = {"val_dsc": []}
    if info.diffusion:  # the plain autoencoder score too (decode the posterior mean, no chain)
        scores["val_dsc_ae"] = []
    gen = methods.make_generator(seed, device)
    try:
        for start in range(0, len(val), batch_size):
            hq = val.hq[start:start + batch_size].float().to(device)
            x = val.lq[start:start + batch_size].float().to(device) if info.paired else hq
            result = methods.run(model, x, methods.RunSettings(seed=seed), generator=gen)
            scores["val_dsc"] += _dices(result.probs, hq)
            if info.diffusion:
                with torch.no_grad():
                    mu, _ = model.encoder(x)
                scores["val_dsc_ae"] += _dices(methods.decode(model, mu), hq)
    finally:
        model.train(was_training)
    return {k: float(np.mean(v)) for k, v in scores.items()}
