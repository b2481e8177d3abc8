"""Training pairs from real masks mixed with phantoms, drawn on the fly.

Every pair is made the way a real input reaches the model at inference:

1. a high-quality mask in world space (a real vertebra on its isotropic 1 mm grid, or a
   phantom built at 1 mm) is augmented (:func:`lsdebm.data.augment.random_warp`: rotation,
   scale, elastic warp, left-right flip);
2. the thick-slice simulator degrades it along the scanner's axes
   (:func:`lsdebm.data.real.degrade`, ranges :data:`WIDE_RANGES`);
3. the low-quality mask is cropped into the model frame exactly as
   :func:`lsdebm.data.frame.crop_to_model` does at inference (pose estimated on the LQ mask), and
   the high-quality mask is resampled into the same crop.

:class:`MixedPairs` holds a bank of such pairs; ``refresh(epoch)`` re-draws a fraction of it
every epoch, in this process or in forked workers (:class:`lsdebm.data.redraw.RedrawnBank`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lsdebm.data.augment import AugmentRanges, random_warp
from lsdebm.data.bank_cache import cache_path, load_bank, save_bank
from lsdebm.data.frame import crop_label, resample
from lsdebm.data.phantoms import LEVELS, make_vertebra
from lsdebm.data.real import RealMask, degrade, isotropic
from lsdebm.data.redraw import RedrawnBank, bank_workers
from lsdebm.data.thickslice import ParamRanges, sample_params
from lsdebm.errors import InputError

#: Acquisitions for ReconNet's pairs: every plane, 2.5-7.5 mm slabs, mild to strong in-plane
#: blur and boundary noise, staircase (nearest) or interpolated resampling.
WIDE_RANGES = ParamRanges(planes=("sagittal", "sagittal", "axial", "axial", "coronal"), thickness=(2.5, 7.5),
                          gap=(0.0, 1.0), inplane_blur=(0.3, 2.0), noise_amplitude=(0.1, 0.45),
                          noise_smoothness=(2.0, 6.0), threshold=(0.4, 0.6),
                          interpolation=("nearest", "nearest", "linear"))
WORK_SPACING = 1.0
PAD_MM = 15.0


@dataclass(frozen=True)
class Source:
    """A high-quality mask on an isotropic grid with room around it."""

    name: str
    kind: str
    mask: np.ndarray
    affine: np.ndarray


def real_sources(masks: list[RealMask]) -> list[Source]:
    """Real masks resampled to the 1 mm working grid, padded for augmentation."""
    out = []
    for m in masks:
        mask, affine = isotropic(m.mask, m.affine, WORK_SPACING, PAD_MM)
        out.append(Source(m.name, "real", mask, affine))
    return out


def phantom_source(level: str, seed: int) -> Source:
    """A phantom at 1 mm on a 128 mm grid."""
    p = make_vertebra(level, seed, int(128 / WORK_SPACING), WORK_SPACING)
    return Source(f"phantom_{level}_{seed}", "phantom", p.mask, p.affine)


def make_pair(src: Source, rng: np.random.Generator, grid: int, spacing: float, frame: str, offset_world,
              ranges: ParamRanges = WIDE_RANGES, augment: AugmentRanges = AugmentRanges(), values: str = "binary"):
    """One (hq, lq) pair on the model grid from ``src`` (see the module doc).

    ``values``: the lq crop as a ``binary`` mask or as the ``fraction`` of each model voxel
    covered (:func:`lsdebm.data.frame.crop_label`); hq is always binary.
    """
    for _ in range(5):
        hq = random_warp(src.mask, src.affine, rng, augment)
        lq = degrade(hq, src.affine, sample_params(rng, ranges), rng)
        if lq.any():
            break
    else:
        raise InputError(f"{src.name}: the thick-slice simulation removed the whole structure five times")
    lq_crop, info = crop_label(lq, src.affine, None, grid, spacing, offset_mm=offset_world, frame=frame,
                               values=values)
    hq_crop = resample(hq.astype(np.float32), (grid,) * 3, info.crop_affine, src.affine, order=1) >= 0.5
    return hq_crop.astype(np.uint8), lq_crop


class MixedPairs(RedrawnBank):
    """A bank of ``n`` model-grid pairs, ``real_fraction`` of them from real masks, re-drawn on the fly.

    Args:
        real: Real sources (:func:`real_sources`); may be empty when ``real_fraction`` is 0.
        n: Bank size.
        real_fraction: Share of real pairs (the rest are phantoms of new random subjects).
        grid, spacing, frame, offset_world: The model frame (see :func:`crop_label`).
        seed: Seed of everything drawn.
        redraw: Fraction of the bank re-drawn by each :meth:`refresh`.
        values: ``binary`` lq crops (uint8) or ``fraction`` (float16, the share of each voxel covered).
        workers: Processes drawing pairs (forked, one thread each; 0 or 1 = in this process).
        cache: A folder where the first draw is kept and found again (:mod:`lsdebm.data.bank_cache`).
    """

    def __init__(self, real: list[Source], n: int, real_fraction: float, grid: int, spacing: float, frame: str,
                 offset_world, seed: int = 0, redraw: float = 0.1, ranges: ParamRanges = WIDE_RANGES,
                 augment: AugmentRanges = AugmentRanges(), values: str = "binary", workers: int = 0,
                 cache: str | Path | None = None):
        if n < 1:
            raise InputError(f"the training bank needs at least one pair; got {n}")
        if not 0.0 <= real_fraction <= 1.0 or not 0.0 <= redraw <= 1.0:
            raise InputError(f"real fraction {real_fraction} and redraw {redraw} must be in [0, 1]")
        if real_fraction > 0 and not real:
            raise InputError("a real fraction above 0 needs real masks (--data FOLDER or manifest)")
        self.real, self.n, self.seed, self.redraw = real, int(n), int(seed), float(redraw)
        self.workers = bank_workers(workers)
        self.n_real = int(round(n * real_fraction))
        self.frame_args = (grid, spacing, frame, offset_world, ranges, augment, values)
        self.hq = torch.zeros((n, 1) + (grid,) * 3, dtype=torch.uint8)
        self.lq = torch.zeros_like(self.hq, dtype=torch.float16 if values == "fraction" else torch.uint8)
        self.cache_file = None if cache is None else cache_path(cache, self)
        cached = None if cache is None else load_bank(self.cache_file, tuple(self.hq.shape))
        if cached is not None:
            self.hq.copy_(cached[0])
            self.lq.copy_(cached[1])
        else:
            self._fill(range(n), self._start(range(n), 0))
            if self.cache_file is not None:
                save_bank(self.cache_file, self.hq, self.lq)
        self.from_cache = cached is not None
        if self._chosen(1).size == 0:  # nothing is ever re-drawn (a validation bank): no processes kept
            self.close()

    def source(self, index: int, epoch: int) -> Source:
        if index < self.n_real:
            return self.real[index % len(self.real)]
        level = LEVELS[index % len(LEVELS)]
        return phantom_source(level, int(np.random.default_rng([self.seed, index, epoch, 7]).integers(2 ** 31 - 1)))

    def draw(self, index: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The (hq, lq) pair of bank slot ``index`` drawn for ``epoch``."""
        rng = np.random.default_rng([self.seed, index, epoch])
        return make_pair(self.source(index, epoch), rng, *self.frame_args)

    def _store(self, indices, pairs: list) -> None:
        for i, (hq, lq) in zip(indices, pairs):
            self.hq[int(i), 0] = torch.from_numpy(hq)
            self.lq[int(i), 0] = torch.from_numpy(lq)

    def description(self) -> dict:
        return {"source": "mixed", "n": self.n, "real_pairs": self.n_real, "phantom_pairs": self.n - self.n_real,
                "real_masks": [s.name for s in self.real], "redraw_per_epoch": self.redraw, "seed": self.seed,
                "simulator_ranges": {k: list(v) if isinstance(v, tuple) else v
                                     for k, v in vars(self.frame_args[4]).items()},
                "augmentation": vars(self.frame_args[5]), "frame": self.frame_args[2],
                **({} if self.cache_file is None else
                   {"bank_cache": str(self.cache_file), "bank_from_cache": self.from_cache})}

