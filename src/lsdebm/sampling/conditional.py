"""The conditional energy of one reverse step of LSD-EBM (eq. 2), kept apart from the samplers.

:mod:`lsdebm.sampling.reverse` builds it, :mod:`lsdebm.sampling.kernels` recognises it (its
parts let the analytic MLP kernel write the gradient out); it imports neither of them.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

TimeEnergyFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ConditionalEnergy:
    """U(y) = E(y, t) + inv * ||y - z_next||^2 per sample (eq. 2), ``inv = 1 / (2 sigma^2)``.

    A callable like any energy; its parts are kept so the analytic kernel
    (:mod:`lsdebm.sampling.kernels.mlp`) can write the gradient out.
    """

    __slots__ = ("energy", "z_next", "t_vec", "inv")

    def __init__(self, energy: TimeEnergyFn, z_next: torch.Tensor, t_vec: torch.Tensor,
                 inv: float | torch.Tensor) -> None:
        self.energy, self.z_next, self.t_vec, self.inv = energy, z_next, t_vec, inv

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.energy(y, self.t_vec) + self.inv * (y - self.z_next).pow(2).sum(dim=1)


def conditional_energy(energy: TimeEnergyFn, z_next: torch.Tensor, t: int | torch.Tensor,
                       sigma: float | torch.Tensor) -> ConditionalEnergy:
    """U(y) of eq. (2) for the step z_{t+1} -> tilde z_t, per sample.

    ``t`` and ``sigma`` are scalars or per-sample tensors of shape (B,) (training draws t per sample).
    """
    if isinstance(t, torch.Tensor):
        t_vec = t.to(device=z_next.device, dtype=torch.long)
        inv = 1.0 / (2.0 * torch.as_tensor(sigma, device=z_next.device, dtype=z_next.dtype) ** 2)
    else:
        t_vec = torch.full((z_next.shape[0],), t, device=z_next.device, dtype=torch.long)
        inv = 1.0 / (2.0 * float(sigma) ** 2)
    return ConditionalEnergy(energy, z_next, t_vec, inv)
