"""Reconstruction and generation for every method as one stream of events.

``run_events`` is what the CLI, the benchmarks and the napari plugin all consume; ``run``
drains it. The stream for LSD-EBM is: encode (z0) -> forward diffusion to depth ``steps`` ->
reverse chain (Langevin events) -> result. LEBM yields posterior-Langevin events (Pang et al.);
VAE and ReconNet yield encode/result only.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch.nn import functional as F

from lsdebm.config import ConsistencyConfig, LangevinConfig
from lsdebm.errors import InputError
from lsdebm.nn.autoencoder import reparameterize
from lsdebm.nn.lebm import reference_latents
from lsdebm.sampling.events import Event, LangevinEvent, ResultEvent, StepEvent
from lsdebm.sampling.langevin import langevin_iter
from lsdebm.accel.convnet import inference as _net  # same function, faster (eval mode)
from lsdebm.sampling.guidance import guided_events
from lsdebm.sampling.reverse import conditional_energy, forward_events, reverse_events
from lsdebm.sampling.schedule import Schedule, make_schedule


@dataclass(frozen=True)
class RunSettings:
    """Sampling settings; ``None`` means "take it from the checkpoint's config".

    Attributes:
        steps: diffusion depth t* used for reconstruction (LSD-EBM) or posterior steps (LEBM).
        K: Langevin iterations per reverse step.
        step_size: Langevin step size lambda.
        noise_scale: multiplier of the Langevin noise (1 = paper).
        init: Langevin start, ``z_tilde`` or ``random``.
        repeats: independent chains, batched along the batch axis.
        seed: seed of the explicit ``torch.Generator``.
        use_mean: encode with the posterior mean instead of a sample of q(z0|x).
        consistency_weight: lambda of the data-consistency term (None: checkpoint; 0: unguided).
        consistency_steps: guided Langevin iterations after the reverse chain (None: checkpoint).
        projection: weight of the output-grid slab projection (None: checkpoint; 0: off).
        interpolation: weight of the shape-based interpolation fused before it (None: checkpoint).
    """

    steps: int | None = None
    K: int | None = None
    step_size: float | None = None
    noise_scale: float | None = None
    init: str | None = None
    repeats: int = 1
    seed: int = 0
    use_mean: bool = True
    consistency_weight: float | None = None
    consistency_steps: int | None = None
    projection: float | None = None
    interpolation: float | None = None


def langevin_config(model: torch.nn.Module, s: RunSettings) -> LangevinConfig:
    base = model.cfg.langevin
    over = {k: v for k, v in (("K", s.K), ("step_size", s.step_size), ("noise_scale", s.noise_scale),
                              ("init", s.init)) if v is not None}
    return replace(base, **over)


def consistency_config(model: torch.nn.Module, s: RunSettings) -> ConsistencyConfig:
    """The checkpoint's :class:`ConsistencyConfig` with the run's overrides."""
    base = getattr(model.cfg, "consistency", ConsistencyConfig())
    over = {k: v for k, v in (("weight", s.consistency_weight), ("steps", s.consistency_steps),
                              ("projection", s.projection), ("interpolation", s.interpolation)) if v is not None}
    return replace(base, **over)


def sampling_schedule(model: torch.nn.Module) -> Schedule:
    return make_schedule(model.cfg.schedule, for_sampling=True)


def iterations(model: torch.nn.Module, s: RunSettings = RunSettings()) -> int:
    """Langevin iterations per step that ``run_events`` will emit (what a recorder must expect)."""
    if model.kind == "lsdebm":
        return langevin_config(model, s).K
    if model.kind == "lebm":
        return model.cfg.lebm.posterior_steps if s.steps is None else s.steps
    return 0


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def _check_input(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    m = model.cfg.model
    want = (m.grid,) * m.spatial_dims
    if x.dim() == m.spatial_dims:
        x = x[None, None]
    if tuple(x.shape[2:]) != want or x.dim() != m.spatial_dims + 2 or x.shape[1] != 1:
        raise InputError(f"input of shape {tuple(x.shape)} does not match the model grid; expected (B, 1, "
                         f"{', '.join(map(str, want))}) or ({', '.join(map(str, want))})")
    return x.float()


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _result(net: torch.nn.Module, z: torch.Tensor | None, inputs: torch.Tensor) -> ResultEvent:
    """Run ``net`` without gradients and wrap its probabilities; never yields under no_grad."""
    with torch.no_grad():
        return ResultEvent(z, torch.sigmoid(_net(net)(inputs)))


def decode(model: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Per-voxel probabilities p(x|z) for a batch of latents."""
    with torch.no_grad():
        return torch.sigmoid(_net(model.decoder)(z))


def _lsdebm_events(model, x, s: RunSettings, g, observations=None) -> Iterator[Event]:
    lcfg = langevin_config(model, s)
    schedule = sampling_schedule(model)
    depth = lcfg.recon_steps if s.steps is None else s.steps
    if not 0 <= depth <= schedule.T:
        raise InputError(f"steps={depth} is outside 0..{schedule.T} (the checkpoint's T)")
    with torch.no_grad():
        mu, logvar = _net(model.encoder)(x)
    z0 = mu if s.use_mean else reparameterize(mu, logvar, g)
    yield StepEvent("encode", 0, z0)
    z = z0
    for ev in forward_events(schedule, z0, depth, g):
        z = ev.z
        yield ev
    z_one, y = z, z
    for ev in reverse_events(model.energy, schedule, z, depth, lcfg, g):
        if isinstance(ev, StepEvent):
            z = ev.z
            z_one = z if ev.t == 1 else z_one
        elif ev.t == 0:
            y = ev.z
        yield ev
    ccfg = consistency_config(model, s)
    if observations is not None and ccfg.weight > 0 and ccfg.steps > 0 and any(o is not None for o in observations):
        prior, scale = _guided_prior(model, schedule, depth, z_one, y)
        for ev in guided_events(prior, _net(model.decoder), y, observations, ccfg.weight, ccfg.steps,
                                ccfg.step_size, ccfg.noise_scale, scale, g):
            y = ev.z
            yield ev
        z = y / scale
    yield _result(model.decoder, z, z)


def _guided_prior(model, schedule: Schedule, depth: int, z_one: torch.Tensor, y: torch.Tensor):
    """(prior energy, scale) of the chain variable at t = 0: eq. (2) for z_1 -> tilde z_0, or E(z, 0)."""
    if depth:
        return conditional_energy(model.energy, z_one, 0, float(schedule.sigma[1])), float(schedule.a[1])
    t0 = torch.zeros(y.shape[0], dtype=torch.long, device=y.device)
    return (lambda v: model.energy(v, t0)), 1.0


def posterior_energy(model, x: torch.Tensor, prior_sigma: float | None = None):
    """U(z) = -log p(x|z) + E(z) + ||z||^2 / (2 s^2) of the LEBM posterior, per sample.

    ``s`` is ``prior_sigma`` if given (test-time inference passes ``lebm.inference_sigma``),
    else the checkpoint's ``lebm.prior_sigma``.
    """
    c = model.cfg.lebm
    sig = c.prior_sigma if prior_sigma is None else prior_sigma

    def U(z: torch.Tensor) -> torch.Tensor:
        logits = _net(model.decoder)(z)
        if c.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        else:  # authors: Gaussian likelihood with sigma 0.3 on the sigmoid output
            nll = (torch.sigmoid(logits) - x).pow(2).flatten(1).sum(1) / (2 * c.likelihood_sigma ** 2)
        return nll + model.energy(z) + z.pow(2).sum(1) / (2 * sig ** 2)

    return U


def prior_energy(model):
    """U(z) = E(z) + ||z||^2 / (2 prior_sigma^2) of the LEBM prior, per sample."""
    sig2 = model.cfg.lebm.prior_sigma ** 2
    return lambda z: model.energy(z) + z.pow(2).sum(1) / (2 * sig2)


def _lebm_events(model, x, s: RunSettings, g) -> Iterator[Event]:
    c = model.cfg.lebm
    steps = c.posterior_steps if s.steps is None else s.steps
    step_size = c.posterior_step_size if s.step_size is None else s.step_size
    noise = 1.0 if s.noise_scale is None else s.noise_scale
    z = reference_latents(model.cfg, x.shape[0], g, x.device, sigma=c.inference_sigma)
    yield StepEvent("encode", 0, z)
    for st in langevin_iter(posterior_energy(model, x, c.inference_sigma), z, steps, step_size, noise, g):
        z = st.z
        yield LangevinEvent("posterior", 0, st.k, z, st.energy, st.grad_norm, step_size)
    yield _result(model.decoder, z, z)


def _vae_events(model, x, s: RunSettings, g) -> Iterator[Event]:
    with torch.no_grad():
        mu, logvar = _net(model.encoder)(x)
        z = mu if s.use_mean else reparameterize(mu, logvar, g)
    yield StepEvent("encode", 0, z)
    yield _result(model.decoder, z, z)


def _reconnet_events(model, x, s: RunSettings, g) -> Iterator[Event]:
    yield _result(model, None, x)


_RUNNERS = {"lsdebm": _lsdebm_events, "lebm": _lebm_events, "vae": _vae_events, "reconnet": _reconnet_events}


def run_events(model: torch.nn.Module, x: torch.Tensor, settings: RunSettings = RunSettings(),
               generator: torch.Generator | None = None, observations=None) -> Iterator[Event]:
    """Reconstruct ``x`` (B,1,*grid or a bare grid-shaped volume) with ``model``, yielding events.

    ``settings.repeats`` copies of each input are run as one batch (independent chains).
    ``observations`` (one :class:`lsdebm.sampling.guidance.SlabObservation` or None per input)
    make LSD-EBM measurement-aware when the checkpoint's ``consistency`` settings enable it.
    The last event is a :class:`ResultEvent` with probabilities of shape (B*repeats, 1, *grid).
    """
    if settings.repeats < 1:
        raise InputError(f"repeats={settings.repeats} must be >= 1")
    device = _device(model)
    x = _check_input(model, torch.as_tensor(x)).to(device)
    x = x.repeat_interleave(settings.repeats, dim=0)
    g = generator if generator is not None else make_generator(settings.seed, device)
    if model.kind == "lsdebm" and observations is not None:
        if len(observations) * settings.repeats != x.shape[0]:
            raise InputError(f"{len(observations)} observations for {x.shape[0] // settings.repeats} inputs")
        observations = [o.to(device) if o is not None else None for o in observations for _ in range(settings.repeats)]
        return _lsdebm_events(model, x, settings, g, observations)
    return _RUNNERS[model.kind](model, x, settings, g)


def run(model: torch.nn.Module, x: torch.Tensor, settings: RunSettings = RunSettings(),
        generator: torch.Generator | None = None, stage1: torch.nn.Module | None = None) -> ResultEvent:
    """Drain ``run_events``; with ``stage1`` (a ReconNet) its thresholded output is the input."""
    if stage1 is not None:
        x = (run(stage1, x).probs >= 0.5).float()
    result = None
    for result in run_events(model, x, settings, generator):
        pass
    return result


def generate_events(model: torch.nn.Module, n: int, settings: RunSettings = RunSettings(),
                    generator: torch.Generator | None = None) -> Iterator[Event]:
    """Generate ``n`` samples from noise (Algorithm 3 for LSD-EBM; prior Langevin for LEBM)."""
    device = _device(model)
    g = generator if generator is not None else make_generator(settings.seed, device)
    if model.kind == "lebm":
        z = reference_latents(model.cfg, n, g, device)
    else:
        z = torch.randn((n, model.cfg.model.latent_dim), generator=g, device=device)
    if model.kind == "lsdebm":
        schedule = sampling_schedule(model)
        start = schedule.T if settings.steps is None else settings.steps
        yield StepEvent("forward", start, z)
        for ev in reverse_events(model.energy, schedule, z, start, langevin_config(model, settings), g):
            z = ev.z if isinstance(ev, StepEvent) else z
            yield ev
    elif model.kind == "lebm":
        c = model.cfg.lebm
        steps = c.prior_steps if settings.steps is None else settings.steps
        step_size = c.prior_step_size if settings.step_size is None else settings.step_size
        for st in langevin_iter(prior_energy(model), z, steps, step_size, 1.0, g):
            z = st.z
            yield LangevinEvent("prior", 0, st.k, z, st.energy, st.grad_norm, step_size)
    elif model.kind != "vae":
        raise InputError(f"a {model.kind} model cannot generate from noise; use lsdebm, lebm or vae")
    yield _result(model.decoder, z, z)
