"""Convolutional encoder q(z0|x) and decoder p(x|z0) with a flat latent vector.

Shapes follow the authors' small LSD-EBM encoder/decoder (docs/reference-code.md §2.3): double conv at full
resolution, ``len(channels)-1`` poolings each followed by a double conv, a flatten and a Linear
to the latent; the decoder mirrors it with nearest upsampling and ends in one output channel
of logits (per-voxel Bernoulli).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lsdebm.config import ModelConfig
from lsdebm.nn.blocks import conv, double_conv, pool, upsample


class Encoder(nn.Module):
    """Inference network returning ``(mu, logvar)`` of q(z0|x) (separate heads by default)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, ch = cfg.spatial_dims, cfg.channels
        layers: list[nn.Module] = [double_conv(d, 1, max(ch[0] // 2, 1), ch[0])]
        for cin, cout in zip(ch[:-1], ch[1:]):
            layers += [pool(d), double_conv(d, cin, cin, cout)]
        self.features = nn.Sequential(*layers)
        flat = ch[-1] * cfg.bottleneck ** d
        self.mean = nn.Linear(flat, cfg.latent_dim)
        self.shared_head = cfg.shared_head
        self.logvar = None if cfg.shared_head else nn.Linear(flat, cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x).flatten(1)
        mu = self.mean(h)
        if self.logvar is None:  # authors' departure: logvar = softplus(mean) + 1e-6
            return mu, F.softplus(mu) + 1e-6
        return mu, self.logvar(h)


class Decoder(nn.Module):
    """Generation network: latent -> per-voxel logits of shape (B, 1, *grid)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, ch = cfg.spatial_dims, cfg.channels
        self.spatial_dims, self.bottleneck, self.top = d, cfg.bottleneck, ch[-1]
        self.linear = nn.Linear(cfg.latent_dim, ch[-1] * cfg.bottleneck ** d)
        rev = ch[::-1]
        layers: list[nn.Module] = []
        for cin, cout in zip(rev[:-1], rev[1:]):
            layers += [upsample(), double_conv(d, cin, cout, cout)]
        layers.append(conv(d, ch[0], 1))
        self.features = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.linear(z).view(z.shape[0], self.top, *([self.bottleneck] * self.spatial_dims))
        return self.features(h)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z0 = mu + exp(logvar / 2) * eps with eps drawn from ``generator``."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps
