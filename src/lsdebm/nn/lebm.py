"""LEBM baseline (Pang et al. 2020): generator p(x|z) and energy-based latent prior."""
from __future__ import annotations

import torch
from torch import nn

from lsdebm.config import Config
from lsdebm.nn.autoencoder import Decoder
from lsdebm.nn.energy import PriorEnergy


class LEBM(nn.Module):
    """No encoder: z is inferred by posterior Langevin (see lsdebm.sampling.lebm)."""

    kind = "lebm"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.decoder = Decoder(cfg.model)
        self.energy = PriorEnergy(cfg.model.latent_dim, cfg.lebm.energy_hidden, cfg.lebm.energy_layers,
                                  cfg.lebm.batchnorm)


def reference_latents(cfg: Config, n: int, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                      sigma: float | None = None) -> torch.Tensor:
    """``n`` draws from the reference distribution N(0, s^2 I), s = ``sigma`` or ``lebm.prior_sigma``.

    Every LEBM chain starts here: the persistent posterior latents of training, the prior chain
    of the energy's negative samples, test-time posterior inference and generation. With the
    default ``prior_sigma = 1`` this is Pang et al.'s N(0, I) start, bit for bit.
    """
    z = torch.randn((n, cfg.model.latent_dim), generator=generator, device=device, dtype=dtype)
    return z * (cfg.lebm.prior_sigma if sigma is None else sigma)
