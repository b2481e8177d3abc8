"""Typed events emitted by every sampler (one per diffusion step, one per Langevin iteration).

Tensors in events stay on the sampling device and are never modified after emission, so a
consumer may keep references or copy them to the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

PHASES = ("encode", "forward", "reverse", "posterior", "prior", "consistency")


@dataclass(frozen=True)
class StepEvent:
    """A latent at diffusion step ``t`` of ``phase`` (encode: z0; forward: z_t; reverse: z_t)."""

    phase: str
    t: int
    z: torch.Tensor


@dataclass(frozen=True)
class LangevinEvent:
    """One Langevin iteration ``k`` (1-based) while sampling z_t (reverse) or z (posterior).

    ``data_energy``: for the measurement-guided phase (``consistency``), the part of ``energy``
    that is the weighted data-consistency term (:mod:`lsdebm.sampling.guidance`); the prior part
    is ``energy - data_energy``. None for unguided phases.
    """

    phase: str
    t: int
    k: int
    z: torch.Tensor
    energy: torch.Tensor
    grad_norm: torch.Tensor
    step_size: float
    data_energy: torch.Tensor | None = None


@dataclass(frozen=True)
class ResultEvent:
    """Final event: the latent that is decoded and the per-voxel probabilities (B, 1, *grid)."""

    z: torch.Tensor | None
    probs: torch.Tensor


Event = StepEvent | LangevinEvent | ResultEvent
