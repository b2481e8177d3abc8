"""A 2-D latent toy whose energy landscape can be drawn: where eqs. (2)-(4) become pictures.

Data: a mixture of 8 Gaussians on a ring (stand-in for encoder latents z_0). A time-conditioned
energy E(y, t) (the same :class:`lsdebm.nn.energy.TimeEnergy` MLP as the digits model, with
a 2-d input) is trained by the same diffusion-recovery objective as LSD-EBM
(:func:`lsdebm.methods.losses.energy_loss`, Algorithm 1), in seconds.

Reverse step t (z_{t+1} -> z_t) samples y = sqrt(1 - sigma_{t+1}^2) z_t from eq. (2):
    U(y) = E(y, t) + ||y - z_{t+1}||^2 / (2 sigma_{t+1}^2)
with the Langevin updates of eqs. (3)-(4). :func:`energy_grid` evaluates U (or only the learned
term, or only the quadratic term) on a grid; :func:`run_particles` records every Langevin
iteration of every particle, in y coordinates, so both can be drawn together.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lsdebm.config import Config, get_preset
from lsdebm.errors import InputError
from lsdebm.methods import RunSettings, langevin_config, make_generator
from lsdebm.methods.losses import energy_loss
from lsdebm.nn.energy import TimeEnergy
from lsdebm.sampling.events import LangevinEvent, StepEvent
from lsdebm.sampling.reverse import conditional_energy, reverse_events
from lsdebm.sampling.schedule import Schedule, make_schedule

TERMS = ("both", "learned", "quadratic")
TOY_ITERATIONS = 3000


def toy_config() -> Config:
    """2-d latent, energy MLP 2x128, T=10 strided steps, K=30 Langevin steps of size 0.01."""
    return get_preset("default").replace(preset="teach-toy", **{
        "model.latent_dim": 2, "model.energy_hidden": 128, "model.energy_layers": 2, "model.time_embed_dim": 16,
        "schedule.T": 10, "langevin.K": 30, "langevin.step_size": 0.01,
        "train.batch_size": 128, "train.energy_lr": 2e-3, "train.train_K": 30})


class ToyModel(nn.Module):
    """Only the time-conditioned energy E(y, t); no encoder or decoder (the data *are* latents)."""

    kind = "toy"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        m = cfg.model
        if m.latent_dim != 2:
            raise InputError(f"the toy needs latent_dim=2 to be drawn, got {m.latent_dim}")
        self.energy = TimeEnergy(2, m.energy_hidden, m.energy_layers, m.time_embedding, m.time_embed_dim)


def mixture_of_gaussians(n: int, seed: int = 0, modes: int = 6, radius: float = 1.5,
                         std: float = 0.1) -> np.ndarray:
    """``n`` points (n, 2) from ``modes`` equal Gaussians with centres on a circle of ``radius``."""
    rng = np.random.default_rng(seed)
    angle = 2 * np.pi * rng.integers(0, modes, n) / modes
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return (centres + std * rng.standard_normal((n, 2))).astype(np.float32)


def train_toy(iterations: int = TOY_ITERATIONS, seed: int = 0, cfg: Config | None = None,
              progress: Callable[[int, int, dict], None] | None = None) -> tuple[ToyModel, float]:
    """Train E(y, t) on fresh mixture samples with ``energy_loss``; returns (model, seconds)."""
    cfg = cfg or toy_config()
    torch.manual_seed(seed)
    model = ToyModel(cfg).train()
    schedule = make_schedule(cfg.schedule)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.energy_lr, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for it in range(1, iterations + 1):
        z0 = torch.as_tensor(mixture_of_gaussians(cfg.train.batch_size, seed * 100003 + it))
        out = energy_loss(model, z0, schedule, cfg.train.train_K, g)
        opt.zero_grad(set_to_none=True)
        out["loss_e"].backward()
        opt.step()
        if progress is not None:
            progress(it, iterations, {k: float(v.detach()) for k, v in out.items()})
    return model.eval(), time.perf_counter() - start


def landscape_energy(model: ToyModel, z_next: torch.Tensor, t: int, sigma: float, terms: str = "both"):
    """U(y) per point for one conditioning latent ``z_next`` (2,): eq. (2), or one of its two terms."""
    if terms not in TERMS:
        raise InputError(f"terms={terms!r} is not known; expected one of {', '.join(TERMS)}")
    z_next = torch.as_tensor(z_next, dtype=torch.float32).reshape(1, 2)
    if terms == "both":
        return lambda y: conditional_energy(model.energy, z_next.expand(len(y), 2), t, sigma)(y)
    if terms == "learned":
        return lambda y: model.energy(y, torch.full((len(y),), t, dtype=torch.long))
    return lambda y: (y - z_next).pow(2).sum(dim=1) / (2.0 * sigma ** 2)


@dataclass
class EnergyGrid:
    """``values[i, j]`` is the energy at (x = xs[j], y = ys[i]) -- image order, rows are the 2nd coordinate."""

    xs: np.ndarray
    ys: np.ndarray
    values: np.ndarray


def energy_grid(model: ToyModel, z_next, t: int, sigma: float, terms: str = "both",
                extent: tuple[float, float, float, float] = (-2.5, 2.5, -2.5, 2.5), n: int = 121) -> EnergyGrid:
    """Evaluate the landscape of reverse step ``t`` on an n x n grid over ``extent`` (x0, x1, y0, y1)."""
    if n < 2:
        raise InputError(f"grid size n={n} must be >= 2")
    xs = np.linspace(extent[0], extent[1], n)
    ys = np.linspace(extent[2], extent[3], n)
    gx, gy = np.meshgrid(xs, ys)
    pts = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], axis=1), dtype=torch.float32)
    with torch.no_grad():
        values = landscape_energy(model, z_next, t, sigma, terms)(pts)
    return EnergyGrid(xs, ys, values.double().numpy().reshape(n, n))


@dataclass
class ParticleRun:
    """Every Langevin iteration of every particle of a full reverse chain (Algorithm 3 on the toy).

    Attributes:
        y: (T, K+1, n, 2) the Langevin variable y of step t at iteration k (k = 0 is the start).
        z_next: (T, n, 2) the conditioning latent z_{t+1} of each particle at step t.
        energy: (T, K+1, n) U(y) of eq. (2) at each recorded y.
        sigma: (T,) sigma_{t+1} of each step; ``a``: (T,) sqrt(1 - sigma_{t+1}^2).
    """

    y: np.ndarray
    z_next: np.ndarray
    energy: np.ndarray
    sigma: np.ndarray
    a: np.ndarray

    @property
    def z0(self) -> np.ndarray:
        """Generated latents z_0 = y / a_1 at the end of step t = 0."""
        return self.y[0, -1] / self.a[0]


def run_particles(model: ToyModel, n: int = 64, settings: RunSettings = RunSettings()) -> ParticleRun:
    """Start n particles at z_T ~ N(0, I) and run the reverse chain of eqs. (2)-(4), recording all."""
    if n < 1:
        raise InputError(f"number of particles n={n} must be >= 1")
    schedule: Schedule = make_schedule(model.cfg.schedule, for_sampling=True)
    lcfg = langevin_config(model, settings)
    g = make_generator(settings.seed, "cpu")
    T = schedule.T
    z = torch.randn((n, 2), generator=g)
    K = lcfg.K
    y = np.zeros((T, K + 1, n, 2), np.float32)
    energy = np.zeros((T, K + 1, n), np.float32)
    z_next = np.zeros((T, n, 2), np.float32)
    z_next[T - 1] = z.numpy()
    for ev in reverse_events(model.energy, schedule, z, T, lcfg, g):
        if isinstance(ev, LangevinEvent):
            y[ev.t, ev.k] = ev.z.numpy()
        elif isinstance(ev, StepEvent) and ev.t > 0:
            z_next[ev.t - 1] = ev.z.numpy()
    sigma = schedule.sigma[1:].astype(np.float64)
    # k = 0 is where the chain starts: z_{t+1} (init "z_tilde"); a random start is not in the
    # event stream, so it is shown at its first iterate instead.
    y[:, 0] = z_next if lcfg.init == "z_tilde" else y[:, 1]
    for t in range(T):
        U = conditional_energy(model.energy, torch.as_tensor(z_next[t]).repeat(K + 1, 1), t, float(sigma[t]))
        with torch.no_grad():
            energy[t] = U(torch.as_tensor(y[t]).reshape(-1, 2)).numpy().reshape(K + 1, n)
    return ParticleRun(y, z_next, energy, sigma, np.sqrt(1 - sigma ** 2))
