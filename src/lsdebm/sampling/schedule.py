"""Noise schedules for the latent forward diffusion of eq. (1). Arithmetic only, no networks.

Indexing: ``sigma[t]`` and ``a[t] = sqrt(1 - sigma[t]^2)`` for t = 1..T are the per-step
std and scale of q(z_t | z_{t-1}); ``a_cum[t]``/``sigma_cum[t]`` give the marginal
q(z_t | z_0) = N(a_cum[t] z_0, sigma_cum[t]^2 I) with a_cum[0] = 1, sigma_cum[0] = 0.
Index 0 of ``a``/``sigma`` is unused (a[0] = 1, sigma[0] = 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from lsdebm.config import ScheduleConfig


@dataclass(frozen=True)
class Schedule:
    """Schedule arrays (float64 numpy, length T+1) plus the noise factor of the forward kernel."""

    sigma: np.ndarray
    forward_noise_factor: float = 1.0

    @property
    def T(self) -> int:
        return len(self.sigma) - 1

    @property
    def a(self) -> np.ndarray:
        return np.sqrt(1.0 - self.sigma ** 2)

    @property
    def a_cum(self) -> np.ndarray:
        return np.cumprod(self.a)

    @property
    def sigma_cum(self) -> np.ndarray:
        return np.sqrt(np.clip(1.0 - self.a_cum ** 2, 0.0, None))

    def q_sample(self, z0: torch.Tensor, t: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw z_t ~ q(z_t | z_0) (marginal of eq. 1)."""
        eps = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
        return float(self.a_cum[t]) * z0 + self.forward_noise_factor * float(self.sigma_cum[t]) * eps

    def q_step(self, z: torch.Tensor, t: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """One forward step z_{t-1} -> z_t of eq. (1)."""
        eps = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        return float(self.a[t]) * z + self.forward_noise_factor * float(self.sigma[t]) * eps


def strided_sigmas(T: int, beta_start: float = 1e-4, beta_end: float = 1e-2, n_betas: int = 1000) -> np.ndarray:
    """The authors' strided construction (docs/reference-code.md §3.1); returns sigma[0..T] with sigma[0] = 0.

    betas = linspace(beta_start, beta_end, n_betas); stride = n_betas // (2(T-1)); step i
    multiplies sqrt(1 - beta) over the strided block, the last step over all remaining betas.
    """
    betas = np.linspace(beta_start, beta_end, n_betas, dtype=np.float64)
    sa = np.sqrt(1.0 - betas)
    stride = n_betas // (2 * (T - 1))
    idx = [i * stride for i in range(T)] + [n_betas - 1]
    a = np.ones(T + 1)
    for i in range(1, T + 1):
        a[i] = np.prod(sa[idx[i - 1] + 1: idx[i] + 1])
    return np.sqrt(1.0 - a ** 2)


def vp_sigmas(T: int, s: float = 0.008, max_sigma: float = 0.999) -> np.ndarray:
    """Cosine variance-preserving schedule (Nichol & Dhariwal 2021) over T steps."""
    f = [math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T + 1)]
    sig = [0.0] + [min(math.sqrt(max(1 - f[t] / f[t - 1], 0.0)), max_sigma) for t in range(1, T + 1)]
    return np.asarray(sig, dtype=np.float64)


def make_schedule(cfg: ScheduleConfig, for_sampling: bool = False) -> Schedule:
    """Build the training schedule, or (``for_sampling``) the one sampling uses.

    With ``eval_T`` set (reference preset) sampling uses arrays computed for ``eval_T`` while the
    model was trained with ``T`` -- the authors' mismatch; otherwise both are identical.
    """
    T = cfg.eval_T if (for_sampling and cfg.eval_T) else cfg.T
    sig = strided_sigmas(T, cfg.beta_start, cfg.beta_end, cfg.n_betas) if cfg.kind == "strided" else vp_sigmas(T)
    return Schedule(sigma=sig, forward_noise_factor=cfg.forward_noise_factor)
