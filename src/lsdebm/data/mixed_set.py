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
every epoch with a seed that depends only on (seed, epoch, index), so runs are reproducible
and DDP ranks agree, and so ``workers`` processes drawing pairs side by side give the same bank
as one (a GPU is otherwise kept waiting for the CPU: one pair takes ~0.3 s on one core).
"""
from __future__ import annotations

import multiprocessing
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lsdebm.data.augment import AugmentRanges, random_warp
from lsdebm.data.bank_cache import cache_path, load_bank, save_bank
from lsdebm.data.frame import crop_label, resample
from lsdebm.data.phantoms import LEVELS, make_vertebra
from lsdebm.data.real import RealMask, degrade, isotropic
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


class MixedPairs:
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
        if workers < 0:
            raise InputError(f"workers {workers} must be >= 0 (0 = draw pairs in this process)")
        if workers > 1 and "fork" not in multiprocessing.get_all_start_methods():
            raise InputError(f"workers {workers}: drawing pairs in worker processes needs the 'fork' start "
                             "method (Linux, macOS); use workers 0 on this platform")
        if real_fraction > 0 and not real:
            raise InputError("a real fraction above 0 needs real masks (--data FOLDER or manifest)")
        self.real, self.n, self.seed, self.redraw = real, int(n), int(seed), float(redraw)
        self.workers = int(workers)
        self._workers_pool, self._ahead = None, None
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
            self._store(range(n), self._start(range(n), 0))
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

    def pair(self, index: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The (hq, lq) pair of bank slot ``index`` drawn for ``epoch``."""
        rng = np.random.default_rng([self.seed, index, epoch])
        return make_pair(self.source(index, epoch), rng, *self.frame_args)

    def _chosen(self, epoch: int) -> np.ndarray:
        """The slots re-drawn for ``epoch`` (empty for epoch 0 or no re-draw)."""
        k = int(round(self.redraw * self.n))
        if k == 0 or epoch < 1:
            return np.zeros(0, dtype=np.int64)
        return np.random.default_rng([self.seed, epoch, 11]).choice(self.n, size=k, replace=False)

    def _pool(self):
        """The worker processes, forked once and kept (they read only the sources and the frame)."""
        global _BANK
        if self._workers_pool is None:
            _BANK = self  # what the forked workers inherit (never pickled; the pool keeps no reference to the bank)
            self._workers_pool = multiprocessing.get_context("fork").Pool(self.workers, _worker_init)
            weakref.finalize(self, self._workers_pool.terminate)
        return self._workers_pool

    def _start(self, indices, epoch: int):
        """Begin drawing ``indices`` for ``epoch``: a pending result in the workers, or the pairs drawn here."""
        jobs = [(int(i), epoch) for i in indices]
        if self.workers > 1 and len(jobs) > 1:
            return self._pool().starmap_async(_worker_pair, jobs, chunksize=1)
        return [self.pair(i, e) for i, e in jobs]

    def _store(self, indices, pairs) -> None:
        pairs = pairs.get() if hasattr(pairs, "get") else pairs
        for i, (hq, lq) in zip(indices, pairs):
            self.hq[int(i), 0] = torch.from_numpy(hq)
            self.lq[int(i), 0] = torch.from_numpy(lq)

    def refresh(self, epoch: int) -> int:
        """Re-draw ``redraw * n`` pairs for ``epoch`` (>= 1); returns how many.

        With workers, the next epoch's pairs are drawn in the background as soon as this one's are
        in (so the training steps of an epoch and the drawing of the next overlap); the pairs are
        the same either way, each drawn from its own (seed, slot, epoch).
        """
        chosen = self._chosen(epoch)
        if len(chosen) == 0:
            return 0
        ahead = self._ahead if self._ahead is not None and self._ahead[0] == epoch else None
        self._store(chosen, ahead[1] if ahead is not None else self._start(chosen, epoch))
        self._ahead = None
        if self.workers > 1:
            self._ahead = (epoch + 1, self._start(self._chosen(epoch + 1), epoch + 1))
        return len(chosen)

    def close(self) -> None:
        """Stop the worker processes (also done when the bank is garbage-collected or Python exits)."""
        if self._workers_pool is not None:
            self._workers_pool.terminate()
            self._workers_pool, self._ahead = None, None

    def __getstate__(self) -> dict:  # a bank travels without its processes
        return {**self.__dict__, "_workers_pool": None, "_ahead": None}

    def description(self) -> dict:
        return {"source": "mixed", "n": self.n, "real_pairs": self.n_real, "phantom_pairs": self.n - self.n_real,
                "real_masks": [s.name for s in self.real], "redraw_per_epoch": self.redraw, "seed": self.seed,
                "simulator_ranges": {k: list(v) if isinstance(v, tuple) else v
                                     for k, v in vars(self.frame_args[4]).items()},
                "augmentation": vars(self.frame_args[5]), "frame": self.frame_args[2],
                **({} if self.cache_file is None else
                   {"bank_cache": str(self.cache_file), "bank_from_cache": self.from_cache})}


_BANK: MixedPairs | None = None  # the bank a forked worker draws for (inherited, never pickled)


def _worker_init() -> None:
    torch.set_num_threads(1)


def _worker_pair(index: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    return _BANK.pair(index, epoch)
