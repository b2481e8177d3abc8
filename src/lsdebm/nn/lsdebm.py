"""LSD-EBM: encoder, time-conditioned latent energy, decoder (paper Fig. 2)."""
from __future__ import annotations

from torch import nn

from lsdebm.config import Config
from lsdebm.nn.autoencoder import Decoder, Encoder
from lsdebm.nn.energy import TimeEnergy


class LSDEBM(nn.Module):
    """Holds the three networks; schedule, sampler and losses live elsewhere."""

    kind = "lsdebm"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        m = cfg.model
        self.cfg = cfg
        self.encoder = Encoder(m)
        self.decoder = Decoder(m)
        self.energy = TimeEnergy(m.latent_dim, m.energy_hidden, m.energy_layers, m.time_embedding, m.time_embed_dim)
