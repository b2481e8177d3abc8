"""LEBM baseline (Pang et al. 2020): generator p(x|z) and energy-based latent prior."""
from __future__ import annotations

from torch import nn

from lsdebm.config import Config
from lsdebm.models.autoencoder import Decoder
from lsdebm.models.energy import PriorEnergy


class LEBM(nn.Module):
    """No encoder: z is inferred by posterior Langevin (see lsdebm.sampling.lebm)."""

    kind = "lebm"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.decoder = Decoder(cfg.model)
        self.energy = PriorEnergy(cfg.model.latent_dim, cfg.lebm.energy_hidden, cfg.lebm.energy_layers,
                                  cfg.lebm.batchnorm)
