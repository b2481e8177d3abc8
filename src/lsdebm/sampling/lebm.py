"""The energies the LEBM baseline (Pang et al. 2020) samples by Langevin: posterior and prior.

Used by reconstruction and generation (:mod:`lsdebm.methods.lebm`) and by training
(:func:`lsdebm.methods.losses.lebm_loss`).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from lsdebm.accel.convnet import inference as fast_net  # same function, faster (eval mode)


def posterior_energy(model, x: torch.Tensor, prior_sigma: float | None = None):
    """U(z) = -log p(x|z) + E(z) + ||z||^2 / (2 s^2) of the LEBM posterior, per sample.

    ``s`` is ``prior_sigma`` if given (test-time inference passes ``lebm.inference_sigma``),
    else the checkpoint's ``lebm.prior_sigma``.
    """
    c = model.cfg.lebm
    sig = c.prior_sigma if prior_sigma is None else prior_sigma

    def U(z: torch.Tensor) -> torch.Tensor:
        logits = fast_net(model.decoder)(z)
        if c.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        else:  # authors: Gaussian likelihood with sigma 0.3 on the sigmoid output
            nll = (torch.sigmoid(logits) - x).pow(2).flatten(1).sum(1) / (2 * c.likelihood_sigma ** 2)
        return nll + model.energy(z) + z.pow(2).sum(1) / (2 * sig ** 2)

    return U


def prior_energy(model):
    """U(z) = E(z) + ||z||^2 / (2 prior_sigma^2) of the LEBM prior, per sample."""
    sig2 = model.cfg.lebm.prior_sigma ** 2
    return lambda z: model.energy(z) + z.pow(2).sum(1) / (2 * sig2)
