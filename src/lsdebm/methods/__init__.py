"""Reconstruction and generation for every method as one stream of events.

``run_events`` is what the CLI, the benchmarks and the napari plugin all consume; ``run``
drains it. The stream for LSD-EBM is: encode (z0) -> forward diffusion to depth ``steps`` ->
reverse chain (Langevin events) -> result. LEBM yields posterior-Langevin events (Pang et al.);
VAE and ReconNet yield encode/result only.

Each kind's behaviour is a :class:`Method` (``method_for(model)``); its
:meth:`Method.resolve` decides every "``None`` = the checkpoint's default" once.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from lsdebm.errors import InputError
from lsdebm.limits import array_bytes, check_memory
from lsdebm.methods.base import Method, Resolved, RunSettings, consistency_config, decode, langevin_config, result_event
from lsdebm.methods.lebm import LEBMMethod
from lsdebm.methods.lsdebm import LSDEBMMethod, sampling_schedule
from lsdebm.methods.reconnet import ReconNetMethod
from lsdebm.methods.vae import VAEMethod
from lsdebm.nn.registry import KINDS
from lsdebm.sampling.events import Event, ResultEvent
from lsdebm.sampling.lebm import posterior_energy, prior_energy

METHOD_CLASSES: dict[str, type[Method]] = {cls.kind: cls for cls in (LSDEBMMethod, VAEMethod, LEBMMethod,
                                                                       ReconNetMethod)}


def method_class(kind: str) -> type[Method]:
    """The :class:`Method` subclass of ``kind``; InputError for a kind without one."""
    if kind not in METHOD_CLASSES:
        raise InputError(f"no method for model kind {kind!r}; expected one of {', '.join(KINDS)}")
    return METHOD_CLASSES[kind]


def method_for(model: torch.nn.Module) -> Method:
    """The :class:`Method` that samples ``model`` (by its ``kind``)."""
    return method_class(getattr(model, "kind", None))(model.cfg, model)


def method_for_config(kind: str, cfg) -> Method:
    """A :class:`Method` of ``kind`` over a config only (resolution and labels; no sampling)."""
    return method_class(kind)(cfg)


def chain_summary(kind: str, cfg) -> tuple[str, str]:
    """(label, value) of a checkpoint's Langevin chain for descriptions; any kind (others: the Langevin config)."""
    cls = METHOD_CLASSES.get(kind, LSDEBMMethod)
    return cls(cfg).chain_summary()


def resolve(model: torch.nn.Module, s: RunSettings = RunSettings(), *, generate: bool = False) -> Resolved:
    """The settings a run of ``model`` really uses (see :meth:`Method.resolve`)."""
    return method_for(model).resolve(s, generate=generate)


def iterations(model: torch.nn.Module, s: RunSettings = RunSettings()) -> int:
    """Langevin iterations per step that ``run_events`` will emit (what a recorder must expect)."""
    return resolve(model, s).chain_length


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """The run's random stream; on CUDA also cuDNN's deterministic convolution algorithms, so that a
    seeded run repeats bit for bit there as on the CPU (LEBM's posterior and the data term take
    gradients back through the decoder, whose default CUDA backward kernels add atomically:
    on an H200 two LEBM runs of one seed differed in the 7th digit of the probabilities)."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def check_input(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` as a float (B, 1, *grid) batch on the model grid; InputError for any other shape."""
    m = model.cfg.model
    want = (m.grid,) * m.spatial_dims
    if x.dim() == m.spatial_dims:
        x = x[None, None]
    if tuple(x.shape[2:]) != want or x.dim() != m.spatial_dims + 2 or x.shape[1] != 1:
        raise InputError(f"input of shape {tuple(x.shape)} does not match the model grid; expected (B, 1, "
                         f"{', '.join(map(str, want))}) or ({', '.join(map(str, want))})")
    return x.float()


def run_events(model: torch.nn.Module, x: torch.Tensor, settings: RunSettings = RunSettings(),
               generator: torch.Generator | None = None, observations=None) -> Iterator[Event]:
    """Reconstruct ``x`` (B,1,*grid or a bare grid-shaped volume) with ``model``, yielding events.

    ``settings.repeats`` copies of each input are run as one batch (independent chains).
    ``observations`` (one :class:`lsdebm.sampling.guidance.SlabObservation` or None per input)
    make LSD-EBM measurement-aware when the checkpoint's ``consistency`` settings enable it.
    The last event is a :class:`ResultEvent` with probabilities of shape (B*repeats, 1, *grid).
    """
    resolved = check_settings(model, settings)
    method = method_for(model)
    device = next(model.parameters()).device
    x = check_input(model, torch.as_tensor(x))
    check_chain_memory(model, x.shape[0], settings.repeats)
    x = x.to(device).repeat_interleave(settings.repeats, dim=0)
    g = generator if generator is not None else make_generator(settings.seed, device)
    observations = method.prepare_observations(observations, x.shape[0], settings.repeats, device)
    return method.events(x, resolved, g, observations)


def check_settings(model: torch.nn.Module, settings: RunSettings) -> Resolved:
    """``settings`` resolved for ``model``'s method; values bad for this model (steps beyond its T, more repeats than
    fit the memory limit) are refused in one line, before anything runs (a command checks them before it starts its
    progress bar). Wrong types and ranges of any model were refused by :class:`RunSettings` itself."""
    check_chain_memory(model, 1, settings.repeats)  # one input's chains; run_events checks the whole batch
    return method_for(model).resolve(settings)


def check_chain_memory(model: torch.nn.Module, inputs: int, repeats: int, what: str | None = None) -> None:
    """Refuse ``inputs * repeats`` chains whose batched volumes alone exceed the memory limit, before allocating
    them (``repeats=10**6`` failed inside torch's allocator): per chain its input copy, its probabilities and the
    network's first feature map, float32 on the model grid (a lower bound of what the run needs). ``what`` names
    the setting (default ``repeats=...``)."""
    m = model.cfg.model
    per_chain = array_bytes((m.grid,) * m.spatial_dims, 4 * (2 + int(m.channels[0])))
    chains = int(inputs) * int(repeats)
    check_memory(chains * per_chain, f"{what or f'repeats={repeats}'}: {chains} chains ({inputs} input(s) x "
                                     f"{repeats} repeats) on the {m.grid}^{m.spatial_dims} model grid")


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
    """Generate ``n`` samples from noise (Algorithm 3 for LSD-EBM; prior Langevin for LEBM); ``n`` that is not a
    whole number >= 1, or whose chains do not fit the memory limit, is refused before anything runs."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:  # n=2.5 failed deep inside torch
        raise InputError(f"n={n!r:.60}: the number of samples must be a whole number >= 1")
    check_chain_memory(model, int(n), 1, f"n={n}")
    method = method_for(model)
    device = next(model.parameters()).device
    g = generator if generator is not None else make_generator(settings.seed, device)
    yield from method.generate_events(n, method.resolve(settings, generate=True), g)


__all__ = ["METHOD_CLASSES", "LEBMMethod", "LSDEBMMethod", "Method", "ReconNetMethod", "Resolved", "RunSettings",
           "VAEMethod", "chain_summary", "check_chain_memory", "check_input", "check_settings", "consistency_config",
           "decode", "generate_events", "iterations", "langevin_config", "make_generator", "method_class",
           "method_for", "method_for_config", "posterior_energy", "prior_energy", "resolve", "result_event", "run",
           "run_events", "sampling_schedule"]
