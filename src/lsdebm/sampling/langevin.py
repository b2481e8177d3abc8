"""Langevin dynamics on an energy callable (eqs. 3, 8), k-diffusion style: short and pure.

Gradients are taken with ``torch.autograd.grad`` with respect to z only. The sampler never
wraps itself in ``no_grad``, never toggles train/eval or ``requires_grad`` of a model, and
draws all randomness from the explicit ``generator``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch

EnergyFn = Callable[[torch.Tensor], torch.Tensor]


class LangevinState(NamedTuple):
    """State after iteration ``k`` (1-based): z, per-sample energy at the previous z, |grad U|."""

    k: int
    z: torch.Tensor
    energy: torch.Tensor
    grad_norm: torch.Tensor


def energy_and_grad(energy_fn: EnergyFn, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample energies U(z) (B,) and dU/dz, without touching any model state."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        energy = energy_fn(z)
        (grad,) = torch.autograd.grad(energy.sum(), z)
    return energy.detach(), grad


def langevin_iter(energy_fn: EnergyFn, z: torch.Tensor, steps: int, step_size: float,
                  noise_scale: float = 1.0, generator: torch.Generator | None = None) -> Iterator[LangevinState]:
    """Yield the states of ``steps`` Langevin updates

    z <- z - step_size / 2 * grad U(z) + sqrt(step_size) * noise_scale * N(0, I).

    This is the reference path; :func:`lsdebm.sampling.kernels.select` picks a faster kernel
    with the same results where one applies.
    """
    noise_std = math.sqrt(step_size) * noise_scale
    z = z.detach()
    for k in range(1, steps + 1):
        energy, grad = energy_and_grad(energy_fn, z)
        z = z - 0.5 * step_size * grad
        if noise_std > 0:
            z = z + noise_std * torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        yield LangevinState(k, z, energy, grad.flatten(1).norm(dim=1))


def langevin(energy_fn: EnergyFn, z: torch.Tensor, steps: int, step_size: float,
             noise_scale: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Run ``langevin_iter`` to the end and return the final z (detached)."""
    state = None
    for state in langevin_iter(energy_fn, z, steps, step_size, noise_scale, generator):
        pass
    return z.detach() if state is None else state.z
