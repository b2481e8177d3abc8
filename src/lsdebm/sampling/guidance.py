"""Measurement-aware sampling: a data-consistency term in the Langevin energy.

The paper's sampler ignores the input once it is encoded, so it can replace a correct vertebra
with a typical one. When the acquisition is known (:mod:`lsdebm.data.acquisition`), each slab
column of the input says whether the mean occupancy of that column was at least one half. The
data energy of a decoded volume ``p = sigmoid(decoder(z))`` is

    D(p) = sum over observed columns c of  relu(0.5 + m - mean_c(p))^2   (observed foreground)
                                         + relu(mean_c(p) - 0.5 + m)^2   (observed background)

where ``mean_c`` averages ``p`` over the column's slab (the partial-volume model of the
simulator) and ``m`` is a small margin. It is zero for every volume the observation allows.

Guided LSD-EBM (:func:`guided_events`): after the reverse chain has produced tilde z_0 with the
paper's energy U_0(y) = E(y, 0) + ||y - z_1||^2 / (2 sigma_1^2), the same Langevin chain
continues for ``consistency.steps`` iterations on U_0(y) + lambda * D(p(y / a_1)), each through
the decoder; the events carry the prior part and the data part separately.

Columns are sampled in the model frame: for each slab of the input and each in-plane point on a
lattice at the model's spacing around the structure, points along the slab's thickness are
mapped through the input affine and the crop affine and read by trilinear interpolation
(``grid_sample``), so the term is differentiable in z and exact for any pose of the crop.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from lsdebm.data.acquisition import Acquisition
from lsdebm.data.boxes import as_boxed
from lsdebm.sampling.events import LangevinEvent
from lsdebm.sampling.langevin import langevin_iter

BOX_MARGIN_MM = 6.0


@dataclass
class SlabObservation:
    """Observed slab columns of one structure in its model frame.

    Attributes:
        grid: (1, n_sub, S, M, 3) normalised ``grid_sample`` coordinates of the points of each column.
        observed: (S, M) 1.0 where the column was observed as foreground, else 0.0.
        margin: The margin ``m`` of the data energy.
    """

    grid: torch.Tensor
    observed: torch.Tensor
    margin: float = 0.02

    @property
    def columns(self) -> int:
        return int(self.observed.numel())

    def to(self, device) -> "SlabObservation":
        return SlabObservation(self.grid.to(device), self.observed.to(device), self.margin)

    def slab_means(self, probs: torch.Tensor) -> torch.Tensor:
        """Mean decoded probability of every column, (S, M), from probs of shape (1, 1, *grid)."""
        values = F.grid_sample(probs, self.grid.to(probs.dtype), mode="bilinear", padding_mode="zeros",
                               align_corners=True)
        return values[0, 0].mean(0)

    def energy(self, probs: torch.Tensor) -> torch.Tensor:
        """D(p) of the module doc for one volume (scalar)."""
        mean = self.slab_means(probs)
        low = torch.relu(0.5 + self.margin - mean) * self.observed
        high = torch.relu(mean - 0.5 + self.margin) * (1.0 - self.observed)
        return (low.pow(2) + high.pow(2)).sum()


def _box(mask: np.ndarray, origin: np.ndarray, spacing: np.ndarray) -> list[tuple[int, int]]:
    where = np.argwhere(mask) + origin
    pad = np.ceil(BOX_MARGIN_MM / spacing).astype(int)
    return [(int(lo - p), int(hi + p)) for lo, hi, p in zip(where.min(0), where.max(0), pad)]


def build_observation(source_mask, in_affine: np.ndarray, acq: Acquisition, crop_affine: np.ndarray,
                      grid: int, model_spacing: float, margin: float = 0.02) -> SlabObservation | None:
    """The :class:`SlabObservation` of one structure, or None if empty.

    ``source_mask`` is the structure on the input grid: a whole array, or a
    :class:`lsdebm.data.boxes.BoxedVolume` of one (a vertebra of a whole-body map is read on its box only).
    """
    seen = as_boxed(source_mask, bool)
    mask, origin = seen.values, np.array([s.start for s in seen.box])
    if not mask.any():
        return None
    in_affine = np.asarray(in_affine, dtype=np.float64)
    spacing = np.linalg.norm(in_affine[:3, :3], axis=0)
    axis = acq.axis
    others = [a for a in range(3) if a != axis]
    box = _box(mask, origin, spacing)
    lo_mm, hi_mm = box[axis][0] * spacing[axis], (box[axis][1] + 1) * spacing[axis]
    slabs = np.arange(acq.slab_of(lo_mm), acq.slab_of(hi_mm) + 1)
    n_sub = max(2, int(np.ceil(acq.thickness_mm / model_spacing)))
    sub = acq.offset_mm + (slabs[:, None] + (np.arange(n_sub)[None, :] + 0.5) / n_sub) * acq.thickness_mm
    centre = acq.offset_mm + (slabs + 0.5) * acq.thickness_mm
    pitch = [max(model_spacing / spacing[a], 1.0) for a in others]
    plane = [np.arange(box[a][0], box[a][1] + 1e-9, p) for a, p in zip(others, pitch)]
    pu, pv = np.meshgrid(*plane, indexing="ij")
    pu, pv = pu.ravel(), pv.ravel()
    # observed value: nearest input voxel at the slab centre
    index = [None, None, None]
    index[axis] = np.round(centre / spacing[axis] - 0.5).astype(int)[:, None]
    index[others[0]], index[others[1]] = np.round(pu).astype(int)[None, :], np.round(pv).astype(int)[None, :]
    observed = seen.at(index).astype(np.float32)  # (S, M)
    # sample points (n_sub, S, M) in input voxel coordinates -> model voxel coordinates
    coords = np.empty((3, n_sub, len(slabs), len(pu)))
    coords[axis] = (sub.T / spacing[axis] - 0.5)[:, :, None]
    coords[others[0]] = pu[None, None, :]
    coords[others[1]] = pv[None, None, :]
    matrix = np.linalg.inv(crop_affine) @ in_affine
    model = np.tensordot(matrix[:3, :3], coords, axes=1) + matrix[:3, 3][:, None, None, None]
    inside = np.all((model >= 0) & (model <= grid - 1), axis=(0, 1))  # (S, M): whole column in the crop
    if not inside.any():
        return None
    keep_m = inside.any(0)
    model, observed = model[:, :, :, keep_m], observed[:, keep_m] * 1.0
    observed[~inside[:, keep_m]] = np.nan
    norm = 2.0 * model / (grid - 1) - 1.0
    g = torch.as_tensor(np.moveaxis(norm[::-1], 0, -1).copy(), dtype=torch.float32)[None]  # (x, y, z) order
    obs = torch.as_tensor(observed)
    valid = ~torch.isnan(obs)
    # columns partly outside the crop carry no information: out of the sum via a neutral target
    g = torch.where(valid[None, None, :, :, None], g, torch.full_like(g, 2.0))
    return SlabObservation(g, torch.nan_to_num(obs, nan=0.0) * valid, margin) if valid.any() else None


def guided_energy(prior_fn, decode_logits, observations: list[SlabObservation | None], weight: float):
    """Energy callable z -> (total, data) per sample: prior_fn(z) + weight * D(sigmoid(decoder(z)))."""

    def both(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = torch.sigmoid(decode_logits(z))
        data = torch.stack([obs.energy(probs[i:i + 1]) if obs is not None else probs.new_zeros(())
                            for i, obs in enumerate(observations)])
        return prior_fn(z) + weight * data, data

    return both


def guided_events(prior_fn, decode_logits, y: torch.Tensor, observations: list[SlabObservation | None],
                  weight: float, steps: int, step_size: float, noise_scale: float, scale: float,
                  generator: torch.Generator | None) -> Iterator[LangevinEvent]:
    """Continue Langevin on prior + weight * data for ``steps`` iterations (phase ``consistency``).

    ``scale`` maps the chain variable to the latent the decoder takes (z = y / scale).
    """
    both = guided_energy(prior_fn, lambda v: decode_logits(v / scale), observations, weight)
    last_data: list[torch.Tensor] = []

    def total(v: torch.Tensor) -> torch.Tensor:
        energy, data = both(v)
        last_data[:] = [data.detach()]
        return energy

    for state in langevin_iter(total, y, steps, step_size, noise_scale, generator):  # the paper's update
        yield LangevinEvent("consistency", 0, state.k, state.z, state.energy, state.grad_norm, step_size,
                            data_energy=weight * last_data[0])
