"""VAE baseline: encode (posterior mean or a sample of q(z0|x)), decode."""
from __future__ import annotations

from collections.abc import Iterator

import torch

from lsdebm.accel.convnet import inference as fast_net  # same function, faster (eval mode)
from lsdebm.methods.base import Method, Resolved, result_event
from lsdebm.methods.losses import vae_loss
from lsdebm.nn.autoencoder import reparameterize
from lsdebm.sampling.events import Event, StepEvent


class VAEMethod(Method):
    """Variational autoencoder: no Langevin chain; generation decodes z ~ N(0, I)."""

    kind = "vae"
    uses = ()

    def events(self, x: torch.Tensor, r: Resolved, g: torch.Generator, observations=None) -> Iterator[Event]:
        with torch.no_grad():
            mu, logvar = fast_net(self.model.encoder)(x)
            z = mu if r.use_mean else reparameterize(mu, logvar, g)
        yield StepEvent("encode", 0, z)
        yield result_event(self.model.decoder, z, z)

    def generate_events(self, n: int, r: Resolved, g: torch.Generator) -> Iterator[Event]:
        device = next(self.model.parameters()).device
        z = torch.randn((n, self.cfg.model.latent_dim), generator=g, device=device)
        yield result_event(self.model.decoder, z, z)

    def n_events(self, r: Resolved, guided: bool = False) -> int:
        return 1 if r.generate else 2  # (encode,) the result

    def loss(self, x, target, *, z_init, generator, schedule, train_K, lebm_steps):
        return vae_loss(self.model, x, generator)
