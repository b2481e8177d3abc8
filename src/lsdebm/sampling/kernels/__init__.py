"""Fast Langevin kernels and the one place that chooses between them and the reference.

The plain autograd sampler :func:`lsdebm.sampling.langevin.langevin_iter` is the reference.
:func:`select` returns, for an energy and a start ``z``, the kernel to run: the analytic MLP
kernel of :mod:`lsdebm.sampling.kernels.mlp` (which replays CUDA graphs on a GPU, see
:mod:`lsdebm.sampling.kernels.cuda_graph`) when it applies, else the reference. Both take the
same arguments and yield the same :class:`lsdebm.sampling.langevin.LangevinState` sequence (to
float rounding). The switch (:func:`set_enabled`, :func:`disabled`, ``LSDEBM_CUDA_GRAPHS``)
lives in :mod:`lsdebm.accel.switch`.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import torch

from lsdebm.accel import switch
from lsdebm.accel.switch import CUDA_GRAPHS_ENV, cuda_graphs_enabled, disabled, enabled, set_enabled
from lsdebm.sampling.kernels import mlp
from lsdebm.sampling.langevin import EnergyFn, LangevinState, langevin_iter

LangevinKernel = Callable[..., Iterator[LangevinState]]


def select(energy_fn: EnergyFn, z: torch.Tensor) -> LangevinKernel:
    """The Langevin kernel for ``energy_fn`` started at ``z``: fast where it applies, else the reference.

    The result is called like ``langevin_iter(energy_fn, z, steps, step_size, noise_scale, generator)``.
    """
    analytic = mlp.mlp_for(energy_fn, z)
    if analytic is None:
        return langevin_iter
    return functools.partial(mlp.fast_langevin_iter, analytic)


def sample(energy_fn: EnergyFn, z: torch.Tensor, steps: int, step_size: float, noise_scale: float = 1.0,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Run the selected kernel to the end and return the final z (detached), like ``langevin``."""
    state = None
    for state in select(energy_fn, z)(energy_fn, z, steps, step_size, noise_scale, generator):
        pass
    return z.detach() if state is None else state.z


__all__ = ["CUDA_GRAPHS_ENV", "LangevinKernel", "cuda_graphs_enabled", "disabled", "enabled", "sample", "select",
           "set_enabled", "switch"]
