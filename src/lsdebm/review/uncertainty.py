"""Per-voxel uncertainty from N repeated stochastic reconstructions.

Every repeat is an independent chain of the same method on the same input (for LSD-EBM the
Langevin noise of the reverse chain, eqs. 2-4, makes chains differ; with ``use_mean=False`` the
encoder's sample z0 ~ q(z0|x) adds the posterior spread, which is the only randomness of a VAE).
The repeats run in batches of ``chunk`` chains and are accumulated with Welford's streaming
mean/variance, so memory does not grow with N.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from lsdebm.errors import InputError, LsdebmError
from lsdebm.review.frame import to_model_grid, volume_to_input
from lsdebm.methods import RunSettings, make_generator, run


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


def repeated_runs(model: torch.nn.Module, x, n: int, settings: RunSettings = RunSettings(),
                  stage1: torch.nn.Module | None = None, chunk: int = 4,
                  progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> Uncertainty:
    """Run ``model`` ``n`` times on ``x`` with independent noise and summarise per voxel.

    Args:
        model: A loaded lsdebm, lebm, vae or reconnet model (reconnet is deterministic: variance 0).
        x: Input volume on the model grid (bare grid or (1, 1, *grid)).
        n: Number of runs (>= 2).
        settings: Sampling settings; ``settings.seed`` seeds one generator shared by all runs,
            ``settings.repeats`` is ignored (``chunk`` sets the batch).
        stage1: Optional ReconNet whose thresholded output is the input (computed once).
        chunk: Chains per batch.
        progress: Called with (runs done, n) after every batch.
        should_stop: Polled between batches; when it returns True, stop early (the result
            summarises the runs done so far).

    Raises:
        InputError: If ``n`` < 2 or ``chunk`` < 1.
    """
    if n < 2:
        raise InputError(f"uncertainty needs at least 2 runs; got n={n}")
    if chunk < 1:
        raise InputError(f"chunk={chunk} must be >= 1")
    if stage1 is not None:
        x = (run(stage1, x).probs >= 0.5).float()
    device = next(model.parameters()).device
    generator = make_generator(settings.seed, device)
    count, mean, m2, fg = 0, None, None, None
    while count < n:
        if should_stop is not None and should_stop():
            break
        b = min(chunk, n - count)
        probs = run(model, x, replace(settings, repeats=b), generator).probs
        batch = probs.detach().cpu().double().numpy().reshape(b, *probs.shape[2:])
        if mean is None:
            mean, m2, fg = (np.zeros(batch.shape[1:]) for _ in range(3))
        for p in batch:  # Welford update, one run at a time
            count += 1
            delta = p - mean
            mean += delta / count
            m2 += delta * (p - mean)
            fg += p >= 0.5
        if progress is not None:
            progress(count, n)
    if count == 0:
        raise LsdebmError("uncertainty run was cancelled before the first batch finished")
    frac = fg / count
    return Uncertainty(mean.astype(np.float32), (m2 / count).astype(np.float32),
                       (frac * (1 - frac)).astype(np.float32), count)


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
