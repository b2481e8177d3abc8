"""VAE baseline (the post-processing model of the earlier ReconNet pipeline)."""
from __future__ import annotations

from torch import nn

from lsdebm.config import Config
from lsdebm.nn.autoencoder import Decoder, Encoder


class VAE(nn.Module):
    """Encoder q(z|x) and decoder p(x|z) with a N(0, I) prior."""

    kind = "vae"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.model)
        self.decoder = Decoder(cfg.model)
