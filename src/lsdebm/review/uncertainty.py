"""Per-voxel uncertainty from N repeated stochastic reconstructions.

Every repeat is an independent chain of the same method on the same input (for LSD-EBM the
Langevin noise of the reverse chain, eqs. 2-4, makes chains differ; with ``use_mean=False`` the
encoder's sample z0 ~ q(z0|x) adds the posterior spread, which is the only randomness of a VAE).
The repeats run in batches of ``chunk`` chains and are accumulated with Welford's streaming
mean/variance, so memory does not grow with N.

:func:`uncertainty_job` is a long job (:mod:`lsdebm.tasks.progress`): one progress value per batch
whose ``payload`` is the summary of the runs so far, so a caller that stops early can keep it;
:func:`repeated_runs` drains it with the old callbacks.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from lsdebm.data.frame import to_model_grid, volume_to_input
from lsdebm.errors import InputError
from lsdebm.methods import RunSettings, make_generator, run
from lsdebm.runtime.device import model_device
from lsdebm.tasks.progress import Cancelled, Job, Progress


@dataclass(frozen=True)
class Uncertainty:
    """Mean probability and per-voxel variance of the probabilities over ``n`` runs.

    Attributes:
        mean: Mean of p(x|z) over the runs, float32, grid shape.
        variance: Population variance (ddof 0) of p(x|z) over the runs, float32.
        mask_variance: Variance of the thresholded masks (p >= 0.5), i.e. f(1-f) with f the
            fraction of runs that call the voxel foreground, float32.
        n: Number of runs.
    """

    mean: np.ndarray
    variance: np.ndarray
    mask_variance: np.ndarray
    n: int


class _Welford:
    """Streaming per-voxel mean and variance of probabilities, and the foreground count."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2, self.fg = 0, None, None, None

    def add(self, p: np.ndarray) -> None:
        if self.mean is None:
            self.mean, self.m2, self.fg = (np.zeros(p.shape) for _ in range(3))
        self.count += 1
        delta = p - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (p - self.mean)
        self.fg += p >= 0.5

    def summary(self) -> Uncertainty:
        frac = self.fg / self.count
        return Uncertainty(self.mean.astype(np.float32), (self.m2 / self.count).astype(np.float32),
                           (frac * (1 - frac)).astype(np.float32), self.count)


def uncertainty_job(model: torch.nn.Module, x, n: int, settings: RunSettings = RunSettings(),
                    stage1: torch.nn.Module | None = None, chunk: int = 4) -> Job[Uncertainty]:
    """Run ``model`` ``n`` times on ``x`` with independent noise; yield progress per batch, return the summary.

    Args:
        model: A loaded lsdebm, lebm, vae or reconnet model (reconnet is deterministic: variance 0).
        x: Input volume on the model grid (bare grid or (1, 1, *grid)).
        n: Number of runs (>= 2).
        settings: Sampling settings; ``settings.seed`` seeds one generator shared by all runs,
            ``settings.repeats`` is ignored (``chunk`` sets the batch).
        stage1: Optional ReconNet whose thresholded output is the input (computed once).
        chunk: Chains per batch.

    Yields:
        ``Progress(runs done, n, "runs", payload=Uncertainty of the runs so far)`` after every batch.

    Raises:
        InputError: If ``n`` < 2 or ``chunk`` < 1.
    """
    if n < 2:
        raise InputError(f"uncertainty needs at least 2 runs; got n={n}")
    if chunk < 1:
        raise InputError(f"chunk={chunk} must be >= 1")
    if stage1 is not None:
        x = (run(stage1, x).probs >= 0.5).float()
    generator = make_generator(settings.seed, model_device(model))
    stats = _Welford()
    while stats.count < n:
        b = min(chunk, n - stats.count)
        probs = run(model, x, replace(settings, repeats=b), generator).probs
        for p in probs.detach().cpu().double().numpy().reshape(b, *probs.shape[2:]):  # one run at a time
            stats.add(p)
        yield Progress(stats.count, n, "runs", stats.summary())
    return stats.summary()


def repeated_runs(model: torch.nn.Module, x, n: int, settings: RunSettings = RunSettings(),
                  stage1: torch.nn.Module | None = None, chunk: int = 4,
                  progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> Uncertainty:
    """:func:`uncertainty_job` drained: the summary of ``n`` runs (arguments as there).

    ``progress`` is called with (runs done, n) after every batch; ``should_stop`` is polled
    before every batch and, when it returns True, the job is closed and the runs done so far
    are summarised.

    Raises:
        InputError: If ``n`` < 2 or ``chunk`` < 1.
        Cancelled: If stopped before the first batch finished.
    """
    job = uncertainty_job(model, x, n, settings, stage1, chunk)
    latest = None
    while should_stop is None or not should_stop():
        try:
            latest = next(job)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(latest.done, latest.total)
    job.close()
    if latest is None:
        raise Cancelled("uncertainty run was cancelled before the first batch finished")
    return latest.payload


def input_grid_uncertainty(model: torch.nn.Module, x, affine, n: int, settings: RunSettings = RunSettings(),
                           stage1: torch.nn.Module | None = None, **kwargs) -> Uncertainty:
    """:func:`repeated_runs` on a mask in any grid: cropped to the model grid, maps resampled back.

    ``kwargs`` (chunk, progress, should_stop) go to :func:`repeated_runs`.
    """
    m = model.cfg.model
    crop, info = to_model_grid(x, affine, m.grid, m.spacing, m)
    u = repeated_runs(model, torch.as_tensor(crop, dtype=torch.float32), n, settings, stage1, **kwargs)
    return Uncertainty(volume_to_input(u.mean, info), volume_to_input(u.variance, info),
                       volume_to_input(u.mask_variance, info), u.n)
