"""The reverse (denoising) chain of LSD-EBM written once as a generator of events (Alg. 2/3).

Each reverse step samples y = tilde z_t = a_{t+1} z_t from the conditional EBM of eq. (2),
  U(y) = E(y, t) + ||y - z_{t+1}||^2 / (2 sigma_{t+1}^2),
by Langevin dynamics (eqs. 3-4), then sets z_t = y / a_{t+1}.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from lsdebm.config import LangevinConfig
from lsdebm.sampling import kernels
from lsdebm.sampling.conditional import ConditionalEnergy, TimeEnergyFn, conditional_energy
from lsdebm.sampling.events import LangevinEvent, StepEvent
from lsdebm.sampling.schedule import Schedule

__all__ = ["ConditionalEnergy", "TimeEnergyFn", "conditional_energy", "forward_events", "reverse_events"]


def reverse_events(energy: TimeEnergyFn, schedule: Schedule, z_start: torch.Tensor, t_start: int,
                   lcfg: LangevinConfig, generator: torch.Generator | None = None,
                   K: int | None = None, step_size: float | None = None) -> Iterator[StepEvent | LangevinEvent]:
    """Denoise ``z_start`` (= z_{t_start}) down to z_0, yielding every event.

    Yields a ``StepEvent("reverse", t, z_t)`` after each step and a ``LangevinEvent`` per
    iteration. K and step_size default to ``lcfg``.
    """
    K = lcfg.K if K is None else K
    step_size = lcfg.step_size if step_size is None else step_size
    if not 0 <= t_start <= schedule.T:
        raise ValueError(f"t_start={t_start} outside 0..{schedule.T}")
    z = z_start.detach()
    for t in range(t_start - 1, -1, -1):
        sigma, a = float(schedule.sigma[t + 1]), float(schedule.a[t + 1])
        U = conditional_energy(energy, z, t, sigma)
        if lcfg.init == "z_tilde":
            y = z
        else:  # authors: random start y ~ N(0, I)
            y = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        for state in kernels.select(U, y)(U, y, K, step_size, lcfg.noise_scale, generator):
            y = state.z
            yield LangevinEvent("reverse", t, state.k, y, state.energy, state.grad_norm, step_size)
        z = y / a
        yield StepEvent("reverse", t, z)


def forward_events(schedule: Schedule, z0: torch.Tensor, t_end: int,
                   generator: torch.Generator | None = None) -> Iterator[StepEvent]:
    """Run the forward Markov chain of eq. (1) from z_0 to z_{t_end}, one event per step."""
    z = z0
    for t in range(1, t_end + 1):
        z = schedule.q_step(z, t, generator)
        yield StepEvent("forward", t, z)
