"""Generate digits from noise with EBM / LEBM / LSD-EBM and keep every (t, k) frame for scrubbing.

LSD-EBM runs Algorithm 3 through :func:`lsdebm.methods.generate_events` (z_T ~ N(0, I), then for
t = T-1 .. 0 a conditional Langevin chain of eqs. 2-4); LEBM runs its prior Langevin chain; the
pixel EBM runs Langevin on the pixels themselves. One :class:`TrajectoryRecorder` consumes each
event stream; the recorded latents are decoded into images afterwards, so every method gives
the same :class:`GenerationFrames` with axes (t, k, sample, y, x).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch

from lsdebm.data.validate import MAX_SEED
from lsdebm.errors import InputError
from lsdebm.limits import array_bytes, check_memory
from lsdebm.methods import RunSettings, decode, generate_events, method_for
from lsdebm.nn.registry import has_energy
from lsdebm.sampling.events import Event, ResultEvent, StepEvent
from lsdebm.sampling.trajectory import Trajectory, TrajectoryRecorder
from lsdebm.tasks.progress import Job, Progress, drain
from lsdebm.teach.pixel_ebm import PixelEBM, pixel_generate_events

METHOD_LABELS = {"ebm": "EBM (pixel space)", "lebm": "LEBM (latent prior)", "lsdebm": "LSD-EBM (latent diffusion)"}


@dataclass
class GenerationFrames:
    """Images of every recorded frame of a generation run.

    Attributes:
        images: (n_t, n_k, n, H, W) in [0, 1]; index i of the t axis is diffusion step ``t_values[i]``.
        t_values: the diffusion step t of each t index (LSD-EBM: 0..T-1; others: [0]).
        k_values: the 1-based Langevin iteration of each k index.
        energy: (n_t, n_k, n) energy the sampler saw at that iteration (conditional energy for LSD-EBM).
        kind: model kind (``lsdebm``, ``lebm``, ``pixel_ebm``).
        trajectory: the recorded latents as a :class:`Trajectory` (what the explorer plots use).
    """

    images: np.ndarray
    t_values: np.ndarray
    k_values: np.ndarray
    energy: np.ndarray
    kind: str
    trajectory: Trajectory

    def plot_trajectory(self, repeats: int = 4) -> Trajectory:
        """The trajectory of the first ``repeats`` samples only (a readable number of plot traces)."""
        tr, r = self.trajectory, slice(0, repeats)
        return Trajectory(tr.forward[r], tr.reverse[r], tr.energy[r], tr.grad_norm[r], tr.k_values,
                          tr.a_cum, dict(tr.metadata))

    @property
    def samples(self) -> np.ndarray:
        """Final images (n, H, W): t = 0, last k."""
        return self.images[0, -1]


def check_sample_count(n) -> int:
    """``n`` as an int when it is a whole number >= 1 (a Python or numpy integer); else one line naming it."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"number of samples n={n!r:.60} must be a whole number >= 1")
    return int(n)


def check_samples_memory(n: int, grid: int, what: str | None = None, itemsize: int = 4 + 4) -> None:
    """Refuse ``n`` generated ``grid`` x ``grid`` images whose arrays exceed the memory limit, before sampling
    (``n=10**8`` ran for hours, batch after batch, towards that allocation): ``itemsize`` bytes a pixel, by default
    the float32 batches and the float32 array they are joined into. ``what`` names the setting (default ``n=...``).
    """
    check_memory(array_bytes((n, grid, grid), itemsize), f"{what or f'n={n}'}: {n} generated {grid}x{grid} digits")


def method_kind(model: torch.nn.Module) -> str:
    """The kind of a teaching model: the pixel EBM or a registered model with an energy (LSD-EBM, LEBM)."""
    kind = getattr(model, "kind", None)
    if not (isinstance(model, PixelEBM) or has_energy(kind)):
        raise InputError(f"a {kind} model cannot generate teaching digits; expected lsdebm, lebm or pixel_ebm")
    dims = getattr(getattr(getattr(model, "cfg", None), "model", None), "spatial_dims", 2)
    if dims != 2:  # a 3D checkpoint (lsdebm-default) generated volumes that no digit mosaic can hold
        raise InputError(f"a {dims}D {kind} model cannot generate teaching digits; expected a 2D teaching "
                         "checkpoint (lsdebm, lebm, ebm or a .safetensors written by `lsdebm teach train`)")
    return kind


def generation_events(model: torch.nn.Module, n: int, settings: RunSettings = RunSettings(),
                      generator: torch.Generator | None = None) -> Iterator[Event]:
    """The event stream of generating ``n`` samples from noise with any teaching model."""
    n = check_sample_count(n)
    method_kind(model)
    if isinstance(model, PixelEBM):
        return pixel_generate_events(model, n, settings, generator)
    return generate_events(model, n, settings, generator)


def _chain_length(model: torch.nn.Module, settings: RunSettings) -> int:
    method_kind(model)
    if isinstance(model, PixelEBM):
        return model.cfg.langevin.K if settings.K is None else settings.K
    return method_for(model).resolve(settings, generate=True).chain_length


def _images(model: torch.nn.Module, z: np.ndarray) -> np.ndarray:
    """Decode latents (..., d) to images (..., H, W); pixel-EBM 'latents' are the pixels."""
    m = model.cfg.model
    lead, d = z.shape[:-1], z.shape[-1]
    if isinstance(model, PixelEBM):  # its "latents" are the pixels
        return np.clip(z, 0.0, 1.0).reshape(lead + (m.grid, m.grid))
    device = next(model.parameters()).device
    flat = torch.as_tensor(z.reshape(-1, d), device=device)
    probs = torch.cat([decode(model, chunk) for chunk in flat.split(1024)]) if len(flat) else flat
    return probs.cpu().numpy().reshape(lead + (m.grid, m.grid))


def generation_job(model: torch.nn.Module, n: int, settings: RunSettings = RunSettings(), every: int = 1,
                   stop: Callable[[], bool] | None = None) -> Job[GenerationFrames]:
    """Generate ``n`` samples, recording every ``every``-th Langevin iteration (and the last).

    A long job (:mod:`lsdebm.tasks.progress`): one ``Progress(events done, events expected,
    phase, payload=the sampler event)`` per event, returning the :class:`GenerationFrames`.
    ``stop`` is polled after each event; when it returns True the chains end early and the
    frames recorded so far are returned (a caller that cancels should discard them).
    """
    kind = method_kind(model)
    K = _chain_length(model, settings)
    if isinstance(model, PixelEBM):
        a = a_cum = np.ones(2)
        expected = K + 1
    else:
        method = method_for(model)
        scales = method.chain_scales()  # None: no diffusion chain to undo
        a, a_cum = scales if scales is not None else (np.ones(2), np.ones(2))
        expected = method.n_events(method.resolve(settings, generate=True))
    rec = TrajectoryRecorder(K, a, a_cum, every=every, metadata={"kind": kind})
    done = 0
    for ev in generation_events(model, n, settings):
        if done == 0 and not isinstance(ev, StepEvent):  # LEBM starts with Langevin events: record z_init
            rec(StepEvent("encode", 0, ev.z))
        done += 1
        rec(ev)
        yield Progress(done, max(done, expected), getattr(ev, "phase", "result"), ev)
        if stop is not None and stop():
            break
    return _frames(model, rec, kind)


def _frames(model: torch.nn.Module, rec: TrajectoryRecorder, kind: str) -> GenerationFrames:
    """Decode a recorder's latents into the frames of every (t, k)."""
    traj = rec.trajectory()
    # reverse: (n, t, k, d) -> (t, k, n, d)
    z = np.transpose(traj.reverse, (1, 2, 0, 3))
    images = _images(model, z)
    if rec.result is not None and len(z):
        final = rec.result.probs.detach().cpu().numpy()[:, 0]
        images[0, -1] = final  # the decoded result (clipped for the pixel EBM) is the last frame
    energy = np.transpose(traj.energy, (1, 2, 0))
    return GenerationFrames(images.astype(np.float32), np.arange(z.shape[0]), traj.k_values.copy(), energy, kind,
                            traj)


def record_generation(model: torch.nn.Module, n: int, settings: RunSettings = RunSettings(), every: int = 1,
                      progress: Callable[[Event], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> GenerationFrames:
    """:func:`generation_job` drained: ``progress`` sees every sampler event, ``should_stop`` is its ``stop``."""
    on_progress = None if progress is None else (lambda p: progress(p.payload))
    return drain(generation_job(model, n, settings, every, should_stop), on_progress)


def sample_images(model: torch.nn.Module, n: int, settings: RunSettings = RunSettings(),
                  batch: int = 250) -> np.ndarray:
    """Just the final images (n, H, W) in [0, 1], generated in batches (seeded by ``settings.seed``).

    A bad ``n`` (not a whole number >= 1, or more images than fit the memory limit) is refused before sampling.
    """
    n = check_sample_count(n)
    method_kind(model)
    check_samples_memory(n, model.cfg.model.grid)
    out = []
    for i, start in enumerate(range(0, n, batch)):
        s = replace(settings, seed=(settings.seed + i) % (MAX_SEED + 1))  # batch i's seed; stays a valid seed
        result = None
        for result in generation_events(model, min(batch, n - start), s):
            pass
        if not isinstance(result, ResultEvent):
            raise InputError("generation produced no result")
        out.append(result.probs.detach().cpu().numpy()[:, 0])
    return np.concatenate(out).astype(np.float32)


__all__ = ["GenerationFrames", "METHOD_LABELS", "check_sample_count", "check_samples_memory", "generation_events",
           "generation_job", "record_generation", "sample_images"]
