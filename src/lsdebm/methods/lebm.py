"""LEBM (Pang et al. 2020): posterior Langevin from the reference distribution, then decode.

Reconstruction samples z from the posterior of the input (``lebm.posterior_*`` settings, start
and posterior sigma ``lebm.inference_sigma``); generation runs the prior chain (``lebm.prior_*``).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from lsdebm.methods.base import Method, Resolved, RunSettings, result_event
from lsdebm.methods.losses import lebm_loss
from lsdebm.nn.lebm import reference_latents
from lsdebm.sampling.events import Event, LangevinEvent, StepEvent
from lsdebm.sampling.langevin import langevin_iter
from lsdebm.sampling.lebm import posterior_energy, prior_energy


class LEBMMethod(Method):
    """Latent EBM prior baseline; its chain length is the number of posterior (prior) steps."""

    kind = "lebm"
    chain_name = "posterior Langevin"
    uses = ("steps", "step_size")

    def resolve(self, s: RunSettings, *, generate: bool = False) -> Resolved:
        c = self.cfg.lebm
        if generate:  # the prior chain runs with the paper's noise (noise_scale is not applied)
            steps = c.prior_steps if s.steps is None else s.steps
            step_size = c.prior_step_size if s.step_size is None else s.step_size
            return Resolved(**self.base_settings(s, generate), steps=steps, step_size=step_size, noise_scale=1.0,
                            chain_length=steps)
        steps = c.posterior_steps if s.steps is None else s.steps
        return Resolved(**self.base_settings(s, generate), steps=steps,
                        step_size=c.posterior_step_size if s.step_size is None else s.step_size,
                        noise_scale=1.0 if s.noise_scale is None else s.noise_scale,
                        reference_sigma=c.inference_sigma, chain_length=steps)

    def events(self, x: torch.Tensor, r: Resolved, g: torch.Generator, observations=None) -> Iterator[Event]:
        model = self.model
        z = reference_latents(model.cfg, x.shape[0], g, x.device, sigma=r.reference_sigma)
        yield StepEvent("encode", 0, z)
        U = posterior_energy(model, x, r.reference_sigma)
        for st in langevin_iter(U, z, r.steps, r.step_size, r.noise_scale, g):
            z = st.z
            yield LangevinEvent("posterior", 0, st.k, z, st.energy, st.grad_norm, r.step_size)
        yield result_event(model.decoder, z, z)

    def generate_events(self, n: int, r: Resolved, g: torch.Generator) -> Iterator[Event]:
        device = next(self.model.parameters()).device
        z = reference_latents(self.cfg, n, g, device)
        for st in langevin_iter(prior_energy(self.model), z, r.steps, r.step_size, r.noise_scale, g):
            z = st.z
            yield LangevinEvent("prior", 0, st.k, z, st.energy, st.grad_norm, r.step_size)
        yield result_event(self.model.decoder, z, z)

    def n_events(self, r: Resolved, guided: bool = False) -> int:
        return r.steps + 1 if r.generate else 1 + r.steps + 1  # (encode,) the chain, the result

    def loss(self, x, target, *, z_init, generator, schedule, train_K, lebm_steps):
        return lebm_loss(self.model, x, z_init, generator, posterior_steps=lebm_steps)

    @classmethod
    def settings_from_controls(cls, depth, K, step_size, seed, repeats) -> RunSettings:
        """For LEBM the explorer's ``K`` is the number of posterior Langevin steps (no depth)."""
        return RunSettings(steps=K, step_size=step_size, seed=seed, repeats=repeats)

    def chain_summary(self) -> tuple[str, str]:
        c = self.cfg.lebm
        return f"K ({self.chain_name})", f"{c.posterior_steps}, step size {c.posterior_step_size:g}"
