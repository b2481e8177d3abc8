"""LSD-EBM: encode (z0) -> forward diffusion to depth t* -> reverse Langevin chain -> decode.

Reconstruction is Algorithm 2 (with the optional data-consistency iterations of
:mod:`lsdebm.sampling.guidance`), generation from noise Algorithm 3.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from lsdebm.accel.convnet import inference as fast_net  # same function, faster (eval mode)
from lsdebm.errors import InputError
from lsdebm.methods.base import Method, Resolved, RunSettings, consistency_config, langevin_config, result_event
from lsdebm.methods.losses import lsdebm_loss
from lsdebm.nn.autoencoder import reparameterize
from lsdebm.sampling.events import Event, StepEvent
from lsdebm.sampling.guidance import guided_events
from lsdebm.sampling.reverse import conditional_energy, forward_events, reverse_events
from lsdebm.sampling.schedule import Schedule, make_schedule


def sampling_schedule(model: torch.nn.Module) -> Schedule:
    """The checkpoint's diffusion schedule as the samplers use it."""
    return make_schedule(model.cfg.schedule, for_sampling=True)


def guided_prior(model, schedule: Schedule, depth: int, z_one: torch.Tensor, y: torch.Tensor):
    """(prior energy, scale) of the chain variable at t = 0: eq. (2) for z_1 -> tilde z_0, or E(z, 0)."""
    if depth:
        return conditional_energy(model.energy, z_one, 0, float(schedule.sigma[1])), float(schedule.a[1])
    t0 = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
    return (lambda v: model.energy(v, t0)), 1.0


class LSDEBMMethod(Method):
    """Latent-space diffusion with an energy-based prior (the paper's method)."""

    kind = "lsdebm"

    def resolve(self, s: RunSettings, *, generate: bool = False) -> Resolved:
        lcfg = langevin_config(self, s)
        T = make_schedule(self.cfg.schedule, for_sampling=True).T
        default = T if generate else lcfg.recon_steps
        steps = default if s.steps is None else s.steps
        if not generate and not 0 <= steps <= T:
            raise InputError(f"steps={steps} is outside 0..{T} (the checkpoint's T)")
        return Resolved(**self.base_settings(s, generate), steps=steps, K=lcfg.K, step_size=lcfg.step_size,
                        noise_scale=lcfg.noise_scale, init=lcfg.init, T=T, chain_length=lcfg.K, langevin=lcfg,
                        consistency=consistency_config(self, s))

    def prepare_observations(self, observations, n_chains: int, repeats: int, device) -> list | None:
        if observations is None:
            return None
        if len(observations) * repeats != n_chains:
            raise InputError(f"{len(observations)} observations for {n_chains // repeats} inputs")
        return [o.to(device) if o is not None else None for o in observations for _ in range(repeats)]

    def guided(self, r: Resolved, observations) -> bool:
        """Whether a run with ``observations`` takes data-consistency iterations after the chain."""
        c = r.consistency
        return (observations is not None and c.weight > 0 and c.steps > 0
                and any(o is not None for o in observations))

    def events(self, x: torch.Tensor, r: Resolved, g: torch.Generator, observations=None) -> Iterator[Event]:
        model, schedule, depth = self.model, sampling_schedule(self.model), r.steps
        with torch.no_grad():
            mu, logvar = fast_net(model.encoder)(x)
        z0 = mu if r.use_mean else reparameterize(mu, logvar, g)
        yield StepEvent("encode", 0, z0)
        z = z0
        for ev in forward_events(schedule, z0, depth, g):
            z = ev.z
            yield ev
        z_one, y = z, z
        for ev in reverse_events(model.energy, schedule, z, depth, r.langevin, g):
            if isinstance(ev, StepEvent):
                z = ev.z
                z_one = z if ev.t == 1 else z_one
            elif ev.t == 0:
                y = ev.z
            yield ev
        c = r.consistency
        if self.guided(r, observations):
            prior, scale = guided_prior(model, schedule, depth, z_one, y)
            for ev in guided_events(prior, fast_net(model.decoder), y, observations, c.weight, c.steps,
                                    c.step_size, c.noise_scale, scale, g):
                y = ev.z
                yield ev
            z = y / scale
        yield result_event(model.decoder, z, z)

    def generate_events(self, n: int, r: Resolved, g: torch.Generator) -> Iterator[Event]:
        device = next(self.model.parameters()).device
        z = torch.randn((n, self.cfg.model.latent_dim), generator=g, device=device)
        yield StepEvent("forward", r.steps, z)
        for ev in reverse_events(self.model.energy, sampling_schedule(self.model), z, r.steps, r.langevin, g):
            z = ev.z if isinstance(ev, StepEvent) else z
            yield ev
        yield result_event(self.model.decoder, z, z)

    def n_events(self, r: Resolved, guided: bool = False) -> int:
        chain = r.steps * (r.K + 1)  # per reverse step: K Langevin events and one step event
        if r.generate:
            return 1 + chain + 1  # z_T, the chain, the result
        extra = r.consistency.steps if guided and r.consistency.weight > 0 else 0
        return 1 + r.steps + chain + extra + 1  # encode, forward diffusion, chain, guidance, result

    def loss(self, x, target, *, z_init, generator, schedule, train_K, lebm_steps):
        return lsdebm_loss(self.model, x, schedule, train_K, generator)

    def training_schedule(self):
        return make_schedule(self.cfg.schedule)

    def chain_scales(self):
        schedule = make_schedule(self.cfg.schedule, for_sampling=True)
        return schedule.a, schedule.a_cum

    def comparison_settings(self, s: RunSettings) -> RunSettings:
        return s
