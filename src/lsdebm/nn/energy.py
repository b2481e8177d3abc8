"""Energy networks E(z, t) (LSD-EBM, time-conditioned) and E(z) (LEBM prior).

The LSD-EBM energy is the authors' MLP (latent+time -> 1000 -> 1000 -> 1, GELU) with a
proper sinusoidal embedding of the integer step t (``time_embedding="sinusoidal"``); the
authors append the raw integer t (``"raw"``, reference preset). Energies are returned per
sample, shape (B,). Lower energy = more probable (eq. 2).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style embedding of integer steps ``t`` (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half, 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return emb if dim % 2 == 0 else torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)


def mlp(sizes: list[int], batchnorm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
            if batchnorm:
                layers.append(nn.BatchNorm1d(b))
    return nn.Sequential(*layers)


class TimeEnergy(nn.Module):
    """E_alpha(z, t) of eq. (2), an MLP over [z, embed(t)]."""

    def __init__(self, latent_dim: int, hidden: int, layers: int, time_embedding: str, time_dim: int) -> None:
        super().__init__()
        self.time_embedding, self.time_dim = time_embedding, time_dim
        tdim = {"sinusoidal": time_dim, "raw": 1, "none": 0}[time_embedding]
        self.net = mlp([latent_dim + tdim] + [hidden] * layers + [1])

    def time_features(self, t: torch.Tensor) -> torch.Tensor | None:
        if self.time_embedding == "sinusoidal":
            return sinusoidal_embedding(t, self.time_dim)
        if self.time_embedding == "raw":
            return t.float()[:, None]
        return None

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        feats = self.time_features(t.expand(z.shape[0]) if t.dim() == 0 else t)
        h = z if feats is None else torch.cat([z, feats.to(z.dtype)], dim=1)
        return self.net(h).squeeze(1)


class PriorEnergy(nn.Module):
    """E_alpha(z) of the LEBM prior p(z) ~ exp(-E(z)) N(0, prior_sigma^2 I)."""

    def __init__(self, latent_dim: int, hidden: int, layers: int, batchnorm: bool = False) -> None:
        super().__init__()
        self.net = mlp([latent_dim] + [hidden] * layers + [1], batchnorm=batchnorm)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)
