"""The reverse (denoising) chain of LSD-EBM written once as a generator of events (Alg. 2/3).

Each reverse step samples y = tilde z_t = a_{t+1} z_t from the conditional EBM of eq. (2),
  U(y) = E(y, t) + ||y - z_{t+1}||^2 / (2 sigma_{t+1}^2),
by Langevin dynamics (eqs. 3-4), then sets z_t = y / a_{t+1}.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from lsdebm.config import LangevinConfig
from lsdebm.sampling.events import LangevinEvent, StepEvent
from lsdebm.sampling.langevin import langevin_iter
from lsdebm.sampling.schedule import Schedule

TimeEnergyFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ConditionalEnergy:
    """U(y) = E(y, t) + inv * ||y - z_next||^2 per sample (eq. 2), ``inv = 1 / (2 sigma^2)``.

    A callable like any energy; its parts are kept so :mod:`lsdebm.sampling.kernels.mlp` can write the
    gradient analytically.
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
        for state in langevin_iter(U, y, K, step_size, lcfg.noise_scale, generator):
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
